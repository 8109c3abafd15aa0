/*
 * shmpath/segment.c — memfd segments: create, seal, reopen read-only, map.
 * Thread model: see segment.h.
 */
#include "shmpath/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mqtt/error.h"

/*
 * Segment header, at offset 0 of every segment (little endian, x86_64):
 *
 * | off | size | field    | meaning                                  |
 * |-----|------|----------|------------------------------------------|
 * | 0   | 8    | magic    | "SHMYSEG1"                               |
 * | 8   | 4    | version  | SHIMMY_SEG_VERSION                       |
 * | 12  | 4    | kind     | shimmy_seg_kind                          |
 * | 16  | 8    | size     | whole segment in bytes == file size      |
 * | 24  | 4    | hdr_size | SHIMMY_SEG_HDR_SIZE (body offset)        |
 * | 28  | 4    | reserved | 0                                        |
 * | 32  | 8    | id       | broker-assigned segment id               |
 * | 40  | 24   | reserved | 0                                        |
 *
 * Written once by the broker before any fd leaves it; clients treat it as
 * untrusted anyway, since a publisher holds a writable fd to its log.
 */
struct seg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t kind;
	uint64_t size;
	uint32_t hdr_size;
	uint32_t reserved0;
	uint64_t id;
	uint8_t reserved1[24];
};
_Static_assert(sizeof(struct seg_hdr) == 64, "segment header is 64 bytes");

#define SEG_MAGIC 0x31474553594d4853ull /* "SHMYSEG1" */
#define SEG_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static const size_t class_cap[SHIMMY_SEG_CLASSES] = {
	(size_t)64 << 10, (size_t)1 << 20, (size_t)16 << 20, (size_t)128 << 20,
};

size_t shimmy_seg_class_cap(unsigned cls)
{
	return cls < SHIMMY_SEG_CLASSES ? class_cap[cls] : 0;
}

int shimmy_seg_class_for(size_t cap)
{
	for (unsigned i = 0; i < SHIMMY_SEG_CLASSES; i++)
		if (cap <= class_cap[i])
			return (int)i;
	return -1;
}

static size_t page_size(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	return pg > 0 ? (size_t)pg : 4096u;
}

int shimmy_seg_create(shimmy_seg *seg, uint32_t kind, size_t body_len,
		      uint64_t id)
{
	size_t pg = page_size(), size;
	struct seg_hdr *h;
	void *base;
	int fd, rc;

	if (body_len > SHIMMY_SEG_MAX_SIZE - SHIMMY_SEG_HDR_SIZE)
		return -EINVAL;
	size = (SHIMMY_SEG_HDR_SIZE + body_len + pg - 1) & ~(pg - 1);
	fd = memfd_create("shimmy-seg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		goto out_errno;
	if (fcntl(fd, F_ADD_SEALS, SEG_SEALS) < 0)
		goto out_errno;
	/* Unprivileged holders of the read-only fd can no longer reopen it
	 * O_RDWR through /proc; our own open fd keeps its access mode. */
	if (fchmod(fd, 0400) < 0)
		goto out_errno;
	/* MAP_POPULATE allocates and maps every page now: a first touch costs
	 * a page fault (~12 us here) that must not land on the data path. */
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, fd, 0);
	if (base == MAP_FAILED)
		goto out_errno;
	h = base;
	h->magic = SEG_MAGIC;
	h->version = SHIMMY_SEG_VERSION;
	h->kind = kind;
	h->size = size;
	h->hdr_size = SHIMMY_SEG_HDR_SIZE;
	h->id = id;
	seg->base = base;
	seg->size = size;
	seg->fd = fd;
	seg->kind = kind;
	seg->id = id;
	return 0;

out_errno:
	rc = -errno;
	close(fd);
	return rc;
}

int shimmy_seg_open_ro(const shimmy_seg *seg)
{
	char path[64];
	int fd;

	if (!seg || seg->fd < 0)
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", seg->fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int shimmy_seg_map(shimmy_seg *seg, int fd, uint32_t want_kind,
		   unsigned flags)
{
	struct stat st;
	struct seg_hdr h;
	void *base;
	size_t size;
	int prot, seals;

	if ((flags & (SHIMMY_SEG_RDONLY | SHIMMY_SEG_RDWR)) == 0 ||
	    (flags & SHIMMY_SEG_RDONLY && flags & SHIMMY_SEG_RDWR))
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < (off_t)SHIMMY_SEG_HDR_SIZE ||
	    (uint64_t)st.st_size > SHIMMY_SEG_MAX_SIZE ||
	    (size_t)st.st_size % page_size() != 0)
		return MQTT_ERR_MALFORMED;
	size = (size_t)st.st_size;
	/* Without SHRINK a writer could truncate the file and turn our reads
	 * into SIGBUS; refuse such a segment. */
	if (!(flags & SHIMMY_SEG_NOSEALCHECK)) {
		seals = fcntl(fd, F_GET_SEALS);
		if (seals < 0)
			return -errno;
		if ((seals & SEG_SEALS) != SEG_SEALS)
			return -EPERM;
	}
	prot = PROT_READ | (flags & SHIMMY_SEG_RDWR ? PROT_WRITE : 0);
	base = mmap(NULL, size, prot, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	/* One snapshot: the fields are checked and used from the copy. */
	memcpy(&h, base, sizeof(h));
	if (h.magic != SEG_MAGIC || h.version != SHIMMY_SEG_VERSION ||
	    h.kind != want_kind || h.size != size ||
	    h.hdr_size != SHIMMY_SEG_HDR_SIZE) {
		munmap(base, size);
		return MQTT_ERR_MALFORMED;
	}
	seg->base = base;
	seg->size = size;
	seg->fd = fd;
	seg->kind = h.kind;
	seg->id = h.id;
	return 0;
}

void shimmy_seg_unmap(shimmy_seg *seg)
{
	if (!seg)
		return;
	if (seg->base && seg->size)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0 && seg->base)
		close(seg->fd);
	seg->base = NULL;
	seg->size = 0;
	seg->fd = -1;
}

void *shimmy_seg_body(const shimmy_seg *seg, size_t *len)
{
	if (!seg->base || seg->size < SHIMMY_SEG_HDR_SIZE) {
		*len = 0;
		return NULL;
	}
	*len = seg->size - SHIMMY_SEG_HDR_SIZE;
	return (uint8_t *)seg->base + SHIMMY_SEG_HDR_SIZE;
}
