// SPDX-License-Identifier: LGPL-2.1-or-later
/* Built by scripts/check-install.sh against the installed library only. */
#include <errno.h>
#include <stdio.h>

#include <eventbuf/eventbuf.h>

int main(void)
{
	struct eventbuf_event ev = { .index = 0 };
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	const struct eventbuf_item *it;
	struct eventbuf *buf;
	uint64_t want = 1;
	int ret;

	if (eventbuf_new(&buf) || eventbuf_head(buf, &head) ||
	    eventbuf_reader_new(head, &r))
		return 1;
	for (ev.index = 1; ev.index <= 3; ev.index++)
		if (eventbuf_append(buf, &ev, 1, NULL, NULL))
			return 1;
	while ((ret = eventbuf_reader_next(r, 0, -1, &it)) == 0)
		if (eventbuf_item_events(it)[0].index != want++)
			return 1;
	if (ret != -ETIMEDOUT)
		return 1;
	eventbuf_reader_free(r);
	eventbuf_item_put(head);
	eventbuf_drop(buf);
	eventbuf_barrier();
	printf("eventbuf %s: %d events, in order\n", EVENTBUF_VERSION_STRING,
	       (int)(want - 1));
	return 0;
}
