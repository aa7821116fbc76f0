"""Helpers of the `obsctl top` end-to-end tests: a private tmux server to
drive the screen, parsers for the table (screen captures and --batch frames),
background load with ab, and the per-route truth of the clients."""
import collections
import os
import re
import signal
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence

import harness

PROMPT = "TOPTEST$ "
SCREEN_TIMEOUT = 20.0    # for something to appear on the screen
SCREEN_POLL = 0.2        # seconds between looks at the screen
FRAME_TIMEOUT = 25.0     # for the first frame (probe loading included)
TITLES = ["SERVICE", "METHOD", "ROUTE"]
ID_SEGMENT = re.compile(r"^\d+$")


def route_of(path: str) -> str:
    """obs's route of one of the test paths (numbers become {id})."""
    return "/".join("{id}" if ID_SEGMENT.match(s) else s for s in path.split("/"))


def truth_by_route(truth) -> Dict[tuple, int]:
    """(method, route) -> requests the clients got a response to."""
    return dict(collections.Counter((t.method, route_of(t.path)) for t in truth))


# -- tables ---------------------------------------------------------------------

def parse_table(lines: Sequence[str]) -> Optional[List[Dict[str, str]]]:
    """The rows of the first table in lines: dicts keyed by the column titles
    (SERVICE, METHOD, ROUTE, REQS, REQ/S, P50ms, ...). None without a title
    line. Rows end at the first line that does not split into the titles'
    number of fields."""
    for i, line in enumerate(lines):
        titles = line.split()
        if titles[:3] != TITLES:
            continue
        rows = []
        for row in lines[i + 1:]:
            cells = row.split()
            if len(cells) != len(titles):
                break
            rows.append(dict(zip(titles, cells)))
        return rows
    return None


def num(cell: str) -> float:
    """A table number ("12.3", "4.5K" for bytes, "-" for none -> -1)."""
    if cell == "-":
        return -1.0
    scale = {"K": 1024.0, "M": 1024.0 ** 2, "G": 1024.0 ** 3}
    if cell[-1] in scale:
        return float(cell[:-1]) * scale[cell[-1]]
    return float(cell)


def batch_frames(lines: Sequence[str]) -> List[List[str]]:
    """--batch output cut into frames (each starts with 'obsctl top ')."""
    frames: List[List[str]] = []
    for line in lines:
        if line.startswith("obsctl top "):
            frames.append([])
        if frames:
            frames[-1].append(line)
    return frames


# -- tmux -------------------------------------------------------------------------

class Tmux:
    """One tmux server of our own (-L), one session running an interactive
    bash whose prompt is PROMPT."""

    def __init__(self, width: int, height: int):
        self.sock = f"obs-top-{os.getpid()}-{harness.uniq()}"
        self.run("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                 f"env PS1='{PROMPT}' TERM=tmux-256color bash --norc --noprofile")
        try:
            self.wait(lambda s: PROMPT.rstrip() in s, "the shell prompt")
        except BaseException:
            self.kill()
            raise

    def run(self, *args: str) -> str:
        p = subprocess.run(["tmux", "-L", self.sock] + list(args), capture_output=True,
                           text=True, timeout=10)
        if p.returncode != 0:
            raise harness.HarnessError(f"tmux {' '.join(args)}: exit {p.returncode}: {p.stderr}")
        return p.stdout

    def send(self, *keys: str) -> None:
        self.run("send-keys", "-t", "top", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "top", "-l", text)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "top")

    def alternate_on(self) -> bool:
        return self.run("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def resize(self, width: int, height: int) -> None:
        self.run("resize-window", "-t", "top", "-x", str(width), "-y", str(height))

    def wait(self, pred: Callable[[str], bool], what: str,
             timeout: float = SCREEN_TIMEOUT, poll: float = SCREEN_POLL) -> str:
        """The screen once pred(screen) holds (looked at every `poll` s);
        fails showing the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {what}; the screen is:\n{s}")
            time.sleep(poll)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


# -- load ---------------------------------------------------------------------------

class Load:
    """ab -k in the background against some URLs until stopped."""

    def __init__(self, urls: Sequence[str], concurrency: int = 2, seconds: int = 60):
        self.procs = [harness.spawn(["ab", "-k", "-q", "-c", str(concurrency), "-t", str(seconds),
                                     "-n", "10000000", "-s", "30", u], "ab-load")
                      for u in urls]

    def stop(self) -> None:
        for p in self.procs:
            harness.kill_group(p, signal.SIGINT, 2.0)
