/*
 * shmpath/segment.h — shared-memory segments: creation by the broker
 * (memfd, size seals, pre-faulted mapping), read-only reopening for
 * subscribers, and validated mapping on the client side.
 *
 * Every segment starts with a 4 KiB page whose first 64 bytes are the
 * segment header (docs/shm-protocol.md, "Segment header"); the body that a
 * module lays out (ring, reader slot, doorbell, share group) follows at
 * SHIMMY_SEG_HDR_SIZE. A segment handle owns its mapping and its fd.
 * Thread model: a handle is used by one thread at a time; the mapped memory
 * is shared across processes and its meaning belongs to the body's module.
 */
#ifndef SHIMMY_SHMPATH_SEGMENT_H
#define SHIMMY_SHMPATH_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

/* Protocol string negotiated in CONNECT/CONNACK (User Property shimmy). */
#define SHIMMY_SHM_PROTOCOL "shm/2"
#define SHIMMY_SEG_VERSION 1u
/* Bytes before the body; the header itself uses the first 64. */
#define SHIMMY_SEG_HDR_SIZE 4096u
/* Largest segment a client agrees to map (untrusted size field). */
#define SHIMMY_SEG_MAX_SIZE ((size_t)1 << 31)

/* What a segment's body holds; checked on map so an fd of one kind can't be
 * mistaken for another. */
typedef enum shimmy_seg_kind {
	SHIMMY_SEG_LOG = 1,   /* broadcast log: ring.h */
	SHIMMY_SEG_SLOT = 2,  /* one reader's position page: ring.h */
	SHIMMY_SEG_BELL = 3,  /* a subscriber's doorbell: notify.h */
	SHIMMY_SEG_SHARE = 4, /* shared-subscription group page: share.h */
} shimmy_seg_kind;

/* Mapping flags. */
enum {
	SHIMMY_SEG_RDONLY = 1u << 0, /* map PROT_READ (subscribers) */
	SHIMMY_SEG_RDWR = 1u << 1,   /* map PROT_READ|PROT_WRITE */
	SHIMMY_SEG_NOSEALCHECK = 1u << 2, /* skip the seal check (tests only) */
};

/* Size classes of a log's data capacity, so a log's fixed cost is small:
 * 0 = 64 KiB, 1 = 1 MiB, 2 = 16 MiB, 3 = 128 MiB. */
#define SHIMMY_SEG_CLASSES 4u

/* A mapped segment. Plain value type; fields are read-only for callers. */
typedef struct shimmy_seg {
	void *base;      /* mapping, valid until shimmy_seg_unmap() */
	size_t size;     /* whole segment, header page included */
	int fd;          /* owned by the handle; -1 after unmap */
	uint32_t kind;   /* shimmy_seg_kind */
	uint64_t id;     /* broker-assigned id from the header */
} shimmy_seg;

/* The data capacity of size class cls, or 0 when cls is out of range. */
size_t shimmy_seg_class_cap(unsigned cls);

/* The smallest class whose capacity holds cap bytes, or -1. */
int shimmy_seg_class_for(size_t cap);

/*
 * Broker side. Creates a memfd of SHIMMY_SEG_HDR_SIZE + body_len bytes
 * (rounded up to the page size), seals its size (F_SEAL_SHRINK|GROW|SEAL) so
 * no holder of a writable fd can truncate it under a reader (SIGBUS), drops
 * the file mode to 0400 so a read-only fd cannot be upgraded through
 * /proc/PID/fd by an unprivileged process, maps it read-write and
 * pre-faulted (MAP_POPULATE), zeroes nothing (memfds start zeroed) and
 * writes the segment header. Allocates kernel memory; does not block.
 * Returns 0 or -errno; on error *seg is untouched.
 */
int shimmy_seg_create(shimmy_seg *seg, uint32_t kind, size_t body_len,
		      uint64_t id);

/*
 * Broker side. Opens a new, read-only file description of seg's memfd
 * (open("/proc/self/fd/N", O_RDONLY)), for a subscriber. A PROT_READ mapping
 * of it cannot be mprotect'ed writable (EACCES). Returns the fd (caller
 * owns) or -errno.
 */
int shimmy_seg_open_ro(const shimmy_seg *seg);

/*
 * Client side. Maps fd (received over SCM_RIGHTS) with SHIMMY_SEG_RDONLY or
 * SHIMMY_SEG_RDWR, after checking the size seals and the header: magic,
 * version, kind == want_kind, size field == file size, bounds. The fd is
 * transferred to *seg on success and left open (caller's) on error.
 * Returns 0, -errno, MQTT_ERR_MALFORMED (bad header) or -EPERM (unsealed).
 */
int shimmy_seg_map(shimmy_seg *seg, int fd, uint32_t want_kind,
		   unsigned flags);

/* Unmaps and closes; accepts a zeroed or already-unmapped handle. */
void shimmy_seg_unmap(shimmy_seg *seg);

/* The body of seg and its length; valid until shimmy_seg_unmap(). */
void *shimmy_seg_body(const shimmy_seg *seg, size_t *len);

#endif
