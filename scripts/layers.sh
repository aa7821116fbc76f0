#!/bin/bash
# The layering rule of user/ (docs/design.md): the folders, given lowest
# first, are the stages of the flow; a file in one folder includes headers
# only from its own folder and the folders before it. Prints each violation;
# exits 1 if there is one.
set -u
cd "$(dirname "$0")/.."
rank=()
i=0
for d in "$@"; do
	rank+=("$d=$i")
	i=$((i + 1))
done
rank_of() {
	local r
	for r in "${rank[@]}"; do
		[ "${r%%=*}" = "$1" ] && { echo "${r#*=}"; return; }
	done
	echo -1
}
bad=0
for d in "$@"; do
	[ -d "user/$d" ] || { echo "layers: user/$d does not exist"; bad=1; continue; }
	me=$(rank_of "$d")
	while IFS=: read -r file line inc; do
		to=${inc%%/*}
		them=$(rank_of "$to")
		if [ "$them" -lt 0 ]; then
			echo "layers: $file:$line includes \"$inc\", which is in no folder of the flow"
			bad=1
		elif [ "$them" -gt "$me" ]; then
			echo "layers: $file:$line: $d/ includes $inc, from a later stage"
			bad=1
		fi
	done < <(grep -Ho -n '#include "[^"]*/[^"]*"' user/"$d"/*.[ch] | sed 's/#include "\(.*\)"/\1/')
done
for f in user/*; do
	[ -d "$f" ] || { echo "layers: $f lies outside the stage folders"; bad=1; }
done
exit $bad
