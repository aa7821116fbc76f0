/* SPDX-License-Identifier: MIT */
/*
 * top_batch — `obsctl top --batch` and `--json`: each frame on stdout, as
 * plain text (the header lines, the table with every name whole, a blank
 * line, then the LOOP section when a worker's loop is followed, then a blank
 * line) or as one JSON object on one line (docs: `obsctl top --help`).
 * stdout is flushed after each frame.
 */
#ifndef OBS_TOP_BATCH_H
#define OBS_TOP_BATCH_H

#include "base/json.h"
#include "cli/top_frame.h"
#include "cli/top_loops.h"
#include "cli/top_model.h"
#include "cli/top_source.h"

/* What a batch frame shows; borrowed. */
struct top_batch {
	const struct top_frame *f;
	const struct top_model *m;
	const struct top_loops *ls;
	const struct top_stats *st;
	const struct top_opts *o;
	struct jbuf *jb;		/* --json: the buffer a frame is built in */
};

/* Print the frame as o->json asks. */
void top_batch__print(const struct top_batch *b);

#endif
