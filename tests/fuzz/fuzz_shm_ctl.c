/*
 * libFuzzer harness for the shm/2 control-message decoder (shmpath/ctl.h):
 * arbitrary payloads of $shimmy/ctl. A decoded message must re-encode to
 * the same bytes (nfds is implied by type and status, so it round-trips).
 * Seeds (corpus/shm_ctl): one message of each type, so every type's
 * branch, SHARE_ATTACH and SHARE_DETACH included, is reached at once.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shmpath/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	shimmy_ctl m;
	if (shimmy_ctl_decode(data, size, &m) != 0)
		return 0;
	if (m.topic_len && (m.topic < (const char *)data ||
			    m.topic + m.topic_len > (const char *)data + size))
		abort();
	/* Accepted only with the fds its type implies (SHARE_ATTACH: 2). */
	if (m.type < 1 || m.type > SHIMMY_CTL__MAX || m.nfds > SHIMMY_CTL_MAX_FDS ||
	    (int)m.nfds != shimmy_ctl_fds_for(m.type, m.status))
		abort();
	uint8_t out[SHIMMY_CTL_HDR + 65535];
	int n = shimmy_ctl_encode(&m, out, sizeof(out));
	if (n != (int)size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
