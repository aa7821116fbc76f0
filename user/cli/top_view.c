// SPDX-License-Identifier: MIT
/* obsctl top's screens and keys (see top_view.h). */
#include <curses.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli/top_text.h"
#include "cli/top_view.h"

#define TOP_MIN_COLS		40	/* smaller terminals get a notice only */
#define TOP_MIN_LINES		10
#define TOP_HEAD_LINES		6	/* screen lines above the table rows */
#define TOP_DETAIL_HEAD		3	/* lines of the detail view's header */
#define TOP_BARS_MAX		16	/* histogram bars in the detail view */
#define TOP_BARS_MIN		4	/* bars kept even when the screen is short */
#define TOP_LABEL_W		24	/* " 12.34ms -  13.00ms |" before each bar */
#define TOP_COUNT_W		10	/* the count after each bar */
#define TOP_STATUS_SHOW		8	/* status-code lines in the detail view */
#define TOP_ESC_DELAY_MS	25	/* wait for the rest of an escape sequence */
#define TOP_ERR_CHUNK		4096	/* held stderr is copied back in these */
#define TOP_KEY_ESC		27
#define TOP_KEY_CTRL_H		8
#define TOP_KEY_DEL		127
#define NS_PER_MS		1000000ull

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum top_screen { SCR_TABLE, SCR_DETAIL, SCR_HELP };

struct top_view {
	SCREEN *term;			/* owned */
	enum top_screen scr, back;	/* shown; where help returns to */
	bool paused, editing;
	char edit_prev[TOP_FILTER_MAX];	/* filter to restore when an edit is cancelled */
	const struct top_row *sel;	/* selected row (rows live as long as the model) */
	int offset;			/* first table row on screen */
	int err_saved, err_tmp;		/* stderr while the screen is up; -1: none */
};

static int max_i(int a, int b)
{
	return a > b ? a : b;
}

static int min_i(int a, int b)
{
	return a < b ? a : b;
}

/* Text on line y, cut to the screen (a column short on the last line) and padded. */
static void put(int y, attr_t attr, const char *text)
{
	int w = COLS - (y == LINES - 1);

	if (y < 0 || y >= LINES || w <= 0)
		return;
	attrset(attr);
	mvprintw(y, 0, "%-*.*s", w, w, text);
	attrset(A_NORMAL);
}

/* Index of the selected row among those shown; selects the first when it is not shown. */
static int sel_index(struct top_view *v, const struct top_frame *f)
{
	for (int i = 0; i < f->n; i++)
		if (f->shown[i]->r == v->sel)
			return i;
	v->sel = f->n ? f->shown[0]->r : NULL;
	return 0;
}

static void select_row(struct top_view *v, const struct top_frame *f, int delta)
{
	int i = sel_index(v, f) + delta;

	if (!f->n)
		return;
	i = max_i(0, min_i(i, f->n - 1));
	v->sel = f->shown[i]->r;
}

static int table_rows(void)
{
	return LINES - TOP_HEAD_LINES - 1;
}

/* ---- the table ---------------------------------------------------------------- */

static void hints(struct top_line *l)
{
	top_line__add(l, "q quit  h help  / filter  space pause  Enter detail  sort:");
	for (int c = COL_RPS; c < COL_N + COL_RPS; c++)
		top_line__add(l, " %c", top_cols[c % COL_N].key);
}

static void status_line(const struct top_view *v, const struct top_view_data *d,
			struct top_line *l)
{
	if (v->editing)
		top_line__add(l, "filter: %s_   (Enter keeps it, Esc cancels)", d->o->filter);
	else if (d->o->filter[0])
		top_line__add(l, "filter: %s   (%d of %d rows; Esc clears)", d->o->filter, d->f->n,
			      d->f->n_all);
	if (v->paused)
		top_line__add(l, "%sPAUSED (space resumes)", l->len ? "   " : "");
}

static void table_head(const struct top_view *v, const struct top_view_data *d)
{
	struct top_line l;

	top_line__reset(&l);
	top_text__head_title(&l, d->f, d->o, false);
	put(0, A_BOLD, l.s);
	top_line__reset(&l);
	top_text__head_totals(&l, d->f, d->m);
	put(1, A_NORMAL, l.s);
	top_line__reset(&l);
	top_text__head_system(&l, d->f, d->m, d->st);
	put(2, A_NORMAL, l.s);
	top_line__reset(&l);
	top_text__head_loops(&l, d->f, COLS - 1);
	put(3, A_NORMAL, l.s);
	top_line__reset(&l);
	status_line(v, d, &l);
	put(4, A_BOLD, l.s);
}

/* Scroll so that the selected row is on screen. */
static void table_scroll(struct top_view *v, const struct top_frame *f, int sel, int h)
{
	if (sel < v->offset)
		v->offset = sel;
	if (sel >= v->offset + h)
		v->offset = sel - h + 1;
	v->offset = max_i(0, v->offset < f->n - h ? v->offset : f->n - h);
}

static void table(struct top_view *v, const struct top_view_data *d)
{
	const struct top_frame *f = d->f;
	int h = table_rows(), sel = sel_index(v, f), y = TOP_HEAD_LINES;
	struct top_layout L;
	struct top_line l;

	table_head(v, d);
	top_layout__fit(&L, f, COLS);
	top_line__reset(&l);
	top_text__title(&l, &L);
	put(TOP_HEAD_LINES - 1, A_REVERSE, l.s);
	table_scroll(v, f, sel, h);
	for (int i = v->offset; i < f->n && y < TOP_HEAD_LINES + h; i++, y++) {
		top_line__reset(&l);
		top_text__row(&l, f->shown[i], &L);
		put(y, i == sel ? A_REVERSE | A_BOLD : A_NORMAL, l.s);
	}
	if (!f->n)
		put(y, A_NORMAL, f->n_all ? "  (no row matches the filter)" : "  (no request seen yet)");
	top_line__reset(&l);
	hints(&l);
	put(LINES - 1, A_DIM, l.s);
}

/* ---- the detail of a row ----------------------------------------------------- */

/* The window's histogram of r as up to `bars` bars from line y; lines used. */
static int histogram(const struct top_row *r, int y, int bars)
{
	unsigned lo = LH_BUCKETS, hi = 0, span, first, last;
	int n, len, bar_w = COLS - TOP_LABEL_W - TOP_COUNT_W - 1;
	uint64_t cnt[TOP_BARS_MAX] = {}, top = 0;
	char a[TOP_CELL_MAX], b[TOP_CELL_MAX], bar[TOP_LINE_MAX];
	struct top_line l;

	for (unsigned i = 0; i < LH_BUCKETS; i++) {
		if (!r->hist[i])
			continue;
		if (lo == LH_BUCKETS)
			lo = i;
		hi = i;
	}
	if (lo == LH_BUCKETS) {
		put(y, A_NORMAL, "  (no request in the window)");
		return 1;
	}
	bar_w = max_i(1, min_i(bar_w, TOP_LINE_MAX - 1));
	span = (hi - lo + bars) / bars;
	n = (hi - lo + span) / span;
	for (unsigned i = lo; i <= hi; i++)
		cnt[(i - lo) / span] += r->hist[i];
	for (int k = 0; k < n; k++)
		top = cnt[k] > top ? cnt[k] : top;
	for (int k = 0; k < n; k++) {
		first = lo + k * span;
		last = first + span - 1 < hi ? first + span - 1 : hi;
		len = cnt[k] ? max_i(1, cnt[k] * bar_w / top) : 0;
		memset(bar, '#', len);
		bar[len] = 0;
		top_fmt_dur(a, sizeof(a), lh_lower(first));
		top_fmt_dur(b, sizeof(b), lh_upper(last) + 1);
		top_line__reset(&l);
		top_line__add(&l, " %9s - %-9s |%-*s %llu", a, b, bar_w, bar,
			      (unsigned long long)cnt[k]);
		put(y + k, A_NORMAL, l.s);
	}
	return n;
}

/* Status codes of r since top started, from line y, at most max lines; lines used. */
static int status_codes(const struct top_row *r, int y, int max)
{
	struct top_status s[TOP_STATUS_MAX], tmp;
	int n = r->n_status, used = 0;
	char code[TOP_CELL_MAX];
	struct top_line l;

	memcpy(s, r->status, n * sizeof(s[0]));
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && s[k - 1].code > s[k].code; k--) {
			tmp = s[k];
			s[k] = s[k - 1];
			s[k - 1] = tmp;
		}
	for (int i = 0; i <= n && used < max; i++) {
		uint64_t cnt = i < n ? s[i].n : r->status_other;

		if (i == n && !cnt)
			break;
		if (i == n)
			snprintf(code, sizeof(code), "other");
		else if (s[i].code)
			snprintf(code, sizeof(code), "%d", s[i].code);
		else
			snprintf(code, sizeof(code), "none (no response head)");
		top_line__reset(&l);
		top_line__add(&l, "  %10llu  %5.1f%%  %s", (unsigned long long)cnt,
			      r->requests ? 100.0 * cnt / r->requests : 0, code);
		put(y + used++, A_NORMAL, l.s);
	}
	return used;
}

static void slow_line(struct top_line *l, const struct top_slow *s, bool wide)
{
	char dur[TOP_CELL_MAX], when[TOP_CELL_MAX], st[TOP_CELL_MAX];
	time_t sec = s->wall_ns / TOP_NS_PER_S;
	struct tm tm;

	top_fmt_dur(dur, sizeof(dur), s->dur_us);
	snprintf(st, sizeof(st), s->status ? "%d" : "---", s->status);
	localtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	top_line__add(l, " %8s %3s ", dur, st);
	if (wide)
		top_line__add(l, "%s.%03u ", when, (unsigned)(s->wall_ns / NS_PER_MS % 1000));
	top_line__add(l, "%-32.32s %-32s", s->request_id, s->trace_id);
	if (wide)
		top_line__add(l, " %s", s->path);
}

/* The slowest requests of r's window, from line y (header included), at most max lines. */
static void slowest(const struct top_row *r, bool daemon, int y, int max)
{
	bool wide = COLS >= TOP_WIDE_COLS;
	struct top_slow s[TOP_SLOWEST], tmp;
	int n = r->n_slow;
	struct top_line l;

	memcpy(s, r->slow, n * sizeof(s[0]));
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && s[k - 1].dur_us < s[k].dur_us; k--) {
			tmp = s[k];
			s[k] = s[k - 1];
			s[k - 1] = tmp;
		}
	top_line__reset(&l);
	top_line__add(&l, " %8s %3s %s%-32s %-32s%s", "DURATION", "ST", wide ? "TIME         " : "",
		      "REQUEST_ID", "TRACE_ID", wide ? " PATH" : "");
	put(y, A_UNDERLINE, l.s);
	if (daemon && max > 1)
		put(y + 1, A_NORMAL, "  (obsd's /api/stats has totals, not single requests: "
				     "obsctl trace shows each one)");
	for (int i = 0; i < n && i + 1 < max; i++) {
		top_line__reset(&l);
		slow_line(&l, &s[i], wide);
		put(y + 1 + i, A_NORMAL, l.s);
	}
}

static void detail_head(const struct top_view_data *d, const struct top_row *r)
{
	char p50[TOP_CELL_MAX], p90[TOP_CELL_MAX], p99[TOP_CELL_MAX], max[TOP_CELL_MAX];
	char bytes[TOP_CELL_MAX];
	struct top_row_view v;
	struct top_line l;

	top_frame__row(d->m, r, top_model__span(d->m), d->st, &v);
	top_line__reset(&l);
	top_line__add(&l, "%s %s - service %s - last %ds", r->method, r->route, r->service,
		      d->o->window);
	put(0, A_BOLD, l.s);
	top_fmt_bytes(bytes, sizeof(bytes), v.bps);
	top_line__reset(&l);
	top_line__add(&l, "requests %llu total, %.1f/s - errors %.1f%% - in flight %llu "
		      "(service) - %sB/s", (unsigned long long)v.requests, v.rps, v.err_pct,
		      (unsigned long long)v.in_flight, bytes);
	put(1, A_NORMAL, l.s);
	top_fmt_ms(p50, sizeof(p50), v.win_requests, v.p50);
	top_fmt_ms(p90, sizeof(p90), v.win_requests, v.p90);
	top_fmt_ms(p99, sizeof(p99), v.win_requests, v.p99);
	top_fmt_ms(max, sizeof(max), v.win_requests, v.max);
	top_line__reset(&l);
	top_line__add(&l, "latency ms: p50 %s  p90 %s  p99 %s  max %s  (%llu requests in the "
		      "window)", p50, p90, p99, max, (unsigned long long)v.win_requests);
	put(2, A_NORMAL, l.s);
}

/*
 * Detail of the selected row: the header, then the histogram, the status
 * codes and the slowest requests share the rest; each section has a title
 * and a blank line before it, the hints take the last line.
 */
static void detail(const struct top_view_data *d, const struct top_row *r)
{
	int rest = LINES - 1 - TOP_DETAIL_HEAD - 3 * 2 - 1, codes, slow, bars;
	int y = TOP_DETAIL_HEAD + 1;
	bool daemon = d->o->daemon != NULL;
	struct top_line l;

	detail_head(d, r);
	codes = min_i(r->n_status + (r->status_other > 0), TOP_STATUS_SHOW);
	slow = daemon ? 1 : r->n_slow;
	bars = max_i(TOP_BARS_MIN, min_i(rest - codes - slow, TOP_BARS_MAX));
	slow = max_i(0, min_i(rest - codes - bars, slow));
	top_line__reset(&l);
	top_line__add(&l, "Latency histogram, last %ds", d->o->window);
	put(y++, A_BOLD, l.s);
	y += histogram(r, y, bars) + 1;
	put(y++, A_BOLD, "Status codes since top started");
	y += status_codes(r, y, codes) + 1;
	top_line__reset(&l);
	top_line__add(&l, "Slowest requests, last %ds", d->o->window);
	put(y++, A_BOLD, l.s);
	if (y < LINES - 1)
		slowest(r, daemon, y, min_i(slow + 1, LINES - 1 - y));
	put(LINES - 1, A_DIM, "Esc/q back  up/down previous/next row  space pause  h help");
}

/* ---- help ---------------------------------------------------------------------- */

static const char *const help_text[] = {
	"obsctl top - help (Esc or q to leave)",
	"",
	"  q              quit (on the detail or help screen: back)",
	"  h ?            this help",
	"  up/down j k    select a row; PgUp/PgDn, Home/End (g G) jump",
	"  Enter          detail of the selected row: latency histogram, status",
	"                 codes, slowest recent requests with request and trace ids",
	"  /              filter rows by a substring of service, method or route",
	"                 (Enter keeps it, Esc cancels; Esc on the table clears it)",
	"  space          pause/resume the table (requests are still counted)",
	"  sort keys      r REQ/S  5 P50  9 P90  p P99  m MAX  e ERR%  i INFL",
	"                 b BYTES/S  n route name  c REQS; the same key again or R",
	"                 reverses; < and > step through the columns",
	"",
	"Columns; rates and percentiles cover the window (--window, default 10 s):",
	"  REQS     requests since top started (wide screens)",
	"  REQ/S    requests completed per second",
	"  P50ms .. latency percentiles and maximum, ms: first request byte read to",
	"           last response byte written (log-linear histogram, within 2%)",
	"  ERR%     5xx responses and failed requests (no complete response)",
	"  INFL     requests in flight in the row's service: per service, shared by",
	"           its routes; standalone from the open connections, with --daemon",
	"           from obsd's /api/stats (http_requests_in_flight)",
	"  BYTES/S  request + response bytes per second",
	"Line 4, loop p99: the workers with the slowest event-loop iterations in the",
	"  window (upper bound of the log2 bucket of the p99) and blocked iterations",
};

static void help(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(help_text); i++)
		put(i, i ? A_NORMAL : A_BOLD, help_text[i]);
}

void top_view__draw(struct top_view *v, const struct top_view_data *d)
{
	erase();
	if (COLS < TOP_MIN_COLS || LINES < TOP_MIN_LINES)
		put(0, A_NORMAL, "obsctl top: terminal too small");
	else if (v->scr == SCR_HELP)
		help();
	else if (v->scr == SCR_DETAIL && v->sel)
		detail(d, v->sel);
	else
		table(v, d);
	wnoutrefresh(stdscr);
	doupdate();
}

/* ---- keys ------------------------------------------------------------------------ */

static void key_edit(struct top_view *v, struct top_opts *o, int ch)
{
	size_t len = strlen(o->filter);

	if (ch == TOP_KEY_ESC) {
		memcpy(o->filter, v->edit_prev, sizeof(o->filter));
		v->editing = false;
	} else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
		v->editing = false;
	} else if (ch == KEY_BACKSPACE || ch == TOP_KEY_DEL || ch == TOP_KEY_CTRL_H) {
		if (len)
			o->filter[len - 1] = 0;
	} else if (ch >= ' ' && ch < TOP_KEY_DEL && len + 1 < sizeof(o->filter)) {
		o->filter[len] = ch;
		o->filter[len + 1] = 0;
	}
}

/* A sort key: that column, or the other way round when it is already the one. */
static void key_sort(struct top_opts *o, int ch)
{
	for (int c = 0; c < COL_N; c++) {
		if (top_cols[c].key != ch)
			continue;
		if (o->sort == (enum top_col)c) {
			o->reverse = !o->reverse;
		} else {
			o->sort = c;
			o->reverse = false;
		}
	}
}

/* A key moving the selection; false when ch is not one. */
static bool key_move(struct top_view *v, const struct top_frame *f, int ch)
{
	int page = max_i(table_rows() - 1, 1);

	switch (ch) {
	case KEY_UP:
	case 'k':
		select_row(v, f, -1);
		return true;
	case KEY_DOWN:
	case 'j':
		select_row(v, f, 1);
		return true;
	case KEY_PPAGE:
		select_row(v, f, -page);
		return true;
	case KEY_NPAGE:
		select_row(v, f, page);
		return true;
	case KEY_HOME:
	case 'g':
		select_row(v, f, -TOP_MAX_ROWS);
		return true;
	case KEY_END:
	case 'G':
		select_row(v, f, TOP_MAX_ROWS);
		return true;
	}
	return false;
}

/* A key on the table screen; false to quit. */
static bool key_table(struct top_view *v, const struct top_view_data *d, int ch)
{
	struct top_opts *o = d->o;

	if (key_move(v, d->f, ch))
		return true;
	switch (ch) {
	case 'q':
		return false;
	case 'h':
	case '?':
		v->back = SCR_TABLE;
		v->scr = SCR_HELP;
		break;
	case ' ':
		v->paused = !v->paused;
		break;
	case '/':
		memcpy(v->edit_prev, o->filter, sizeof(v->edit_prev));
		v->editing = true;
		break;
	case TOP_KEY_ESC:
		o->filter[0] = 0;
		break;
	case '\n':
	case '\r':
	case KEY_ENTER:
		sel_index(v, d->f);
		if (v->sel)
			v->scr = SCR_DETAIL;
		break;
	case 'R':
		o->reverse = !o->reverse;
		break;
	case '<':
	case '>':
		o->sort = (o->sort + (ch == '>' ? 1 : COL_N - 1)) % COL_N;
		o->reverse = false;
		break;
	default:
		key_sort(o, ch);
	}
	return true;
}

static void key_detail(struct top_view *v, const struct top_frame *f, int ch)
{
	switch (ch) {
	case 'q':
	case TOP_KEY_ESC:
	case KEY_BACKSPACE:
	case KEY_LEFT:
		v->scr = SCR_TABLE;
		break;
	case 'h':
	case '?':
		v->back = SCR_DETAIL;
		v->scr = SCR_HELP;
		break;
	case KEY_UP:
	case 'k':
		select_row(v, f, -1);
		break;
	case KEY_DOWN:
	case 'j':
		select_row(v, f, 1);
		break;
	case ' ':
		v->paused = !v->paused;
		break;
	}
}

/* One key; false to quit. */
static bool key(struct top_view *v, const struct top_view_data *d, int ch)
{
	if (ch == KEY_RESIZE)
		return true;
	if (v->editing) {
		key_edit(v, d->o, ch);
		return true;
	}
	if (v->scr == SCR_DETAIL) {
		key_detail(v, d->f, ch);
		return true;
	}
	if (v->scr != SCR_HELP)
		return key_table(v, d, ch);
	if (ch == 'q' || ch == 'h' || ch == '?' || ch == TOP_KEY_ESC || ch == '\n' || ch == '\r')
		v->scr = v->back;
	return true;
}

enum top_keys top_view__keys(struct top_view *v, const struct top_view_data *d)
{
	bool any = false;
	int ch;

	while ((ch = getch()) != ERR) {
		if (!key(v, d, ch))
			return TOP_KEYS_QUIT;	/* the keys after it do not matter */
		any = true;
	}
	if (!any)
		return TOP_KEYS_NONE;
	top_frame__arrange(d->f, d->o);
	top_view__draw(v, d);
	return TOP_KEYS_CHANGED;
}

bool top_view__paused(const struct top_view *v)
{
	return v->paused;
}

/* ---- the terminal ------------------------------------------------------------------ */

/* Keep what is written to stderr off the screen until it is closed. */
static void stderr_hold(struct top_view *v)
{
	fflush(stderr);
	v->err_tmp = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (v->err_tmp < 0)
		return;
	v->err_saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
	if (v->err_saved < 0 || dup2(v->err_tmp, STDERR_FILENO) < 0) {
		if (v->err_saved >= 0)
			close(v->err_saved);
		close(v->err_tmp);
		v->err_saved = v->err_tmp = -1;
	}
}

static void stderr_release(struct top_view *v)
{
	char buf[TOP_ERR_CHUNK];
	ssize_t n;

	if (v->err_saved < 0)
		return;
	fflush(stderr);
	dup2(v->err_saved, STDERR_FILENO);
	close(v->err_saved);
	lseek(v->err_tmp, 0, SEEK_SET);
	while ((n = read(v->err_tmp, buf, sizeof(buf))) > 0)
		if (write(STDERR_FILENO, buf, n) != n)
			break;
	close(v->err_tmp);
	v->err_saved = v->err_tmp = -1;
}

bool top_view__possible(void)
{
	if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))
		return true;
	fprintf(stderr, "obsctl top: not a terminal; use --batch or --json for plain output\n");
	return false;
}

struct top_view *top_view__open(void)
{
	struct top_view *v = calloc(1, sizeof(*v));

	if (!v) {
		fprintf(stderr, "obsctl top: out of memory\n");
		return NULL;
	}
	v->err_saved = v->err_tmp = -1;
	setlocale(LC_ALL, "");
	v->term = newterm(NULL, stdout, stdin);
	if (!v->term) {
		fprintf(stderr, "obsctl top: cannot drive the terminal (TERM=%s); try --batch\n",
			getenv("TERM") ? getenv("TERM") : "");
		free(v);
		return NULL;
	}
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	curs_set(0);
	set_escdelay(TOP_ESC_DELAY_MS);
	stderr_hold(v);
	return v;
}

void top_view__close(struct top_view *v)
{
	if (!v)
		return;
	endwin();
	delscreen(v->term);
	stderr_release(v);
	free(v);
}
