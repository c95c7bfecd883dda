/*
 * iscsi-rw: a small libiscsi load and data-integrity tool for polltgt's integration tests.
 *
 * libiscsi-bin ships no tool that writes arbitrary data, so the tests build this one against libiscsi (the reference
 * initiator) and use it to write a deterministic pattern and read it back, with several commands in flight.
 *
 *   iscsi-rw [-q DEPTH] [-b BLOCKS_PER_CMD] [-s SEED] URL write|verify LBA NBLOCKS
 *
 * `write` writes the pattern for SEED over [LBA, LBA+NBLOCKS); `verify` reads the range back and compares it with the
 * pattern, reporting the first differing byte. Exit status 0 on success, 1 on a mismatch or SCSI error, 2 on usage or
 * connection errors. The pattern of a byte depends only on its absolute byte offset and the seed.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill_pattern(unsigned char *buf, uint64_t byte_off, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t p = byte_off + i;
		buf[i] = (unsigned char)(splitmix64(seed ^ (p >> 3)) >> (8 * (p & 7)));
	}
}

struct state {
	struct iscsi_context *iscsi;
	int lun;
	int writing;
	uint32_t block_size;
	uint32_t blocks_per_cmd;
	uint64_t seed;
	uint64_t next_lba, end_lba;
	int in_flight;
	int failed;
	uint64_t done_blocks;
};

struct req {
	struct state *st;
	uint64_t lba;
	uint32_t nblocks;
	unsigned char *buf;
};

static void submit_next(struct state *st);

static void cb(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct req *r = private_data;
	struct state *st = r->st;
	struct scsi_task *task = command_data;
	(void)iscsi;
	st->in_flight--;
	if (status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "iscsi-rw: %s at LBA %" PRIu64 " failed: status %d: %s\n", st->writing ? "WRITE16" : "READ16",
			r->lba, status, iscsi_get_error(st->iscsi));
		st->failed = 1;
	} else if (!st->writing) {
		size_t len = (size_t)r->nblocks * st->block_size;
		if (task->datain.size < 0 || (size_t)task->datain.size != len) {
			fprintf(stderr, "iscsi-rw: READ16 at LBA %" PRIu64 " returned %d bytes, wanted %zu\n", r->lba,
				task->datain.size, len);
			st->failed = 1;
		} else {
			fill_pattern(r->buf, r->lba * st->block_size, len, st->seed);
			if (memcmp(r->buf, task->datain.data, len) != 0) {
				for (size_t i = 0; i < len; i++) {
					if (r->buf[i] != task->datain.data[i]) {
						fprintf(stderr,
							"iscsi-rw: mismatch at byte %" PRIu64 ": wrote 0x%02x, read 0x%02x\n",
							r->lba * st->block_size + i, r->buf[i], task->datain.data[i]);
						break;
					}
				}
				st->failed = 1;
			}
		}
	}
	if (!st->failed)
		st->done_blocks += r->nblocks;
	if (task)
		scsi_free_scsi_task(task);
	free(r->buf);
	free(r);
	if (!st->failed)
		submit_next(st);
}

static void submit_next(struct state *st)
{
	if (st->next_lba >= st->end_lba)
		return;
	uint64_t left = st->end_lba - st->next_lba;
	uint32_t n = left < st->blocks_per_cmd ? (uint32_t)left : st->blocks_per_cmd;
	struct req *r = calloc(1, sizeof(*r));
	size_t len = (size_t)n * st->block_size;
	r->st = st;
	r->lba = st->next_lba;
	r->nblocks = n;
	r->buf = malloc(len);
	if (!r || !r->buf) {
		fprintf(stderr, "iscsi-rw: out of memory\n");
		exit(2);
	}
	struct scsi_task *t;
	if (st->writing) {
		fill_pattern(r->buf, r->lba * st->block_size, len, st->seed);
		t = iscsi_write16_task(st->iscsi, st->lun, r->lba, r->buf, (uint32_t)len, st->block_size, 0, 0, 0, 0, 0,
				       cb, r);
	} else {
		t = iscsi_read16_task(st->iscsi, st->lun, r->lba, (uint32_t)len, st->block_size, 0, 0, 0, 0, 0, cb, r);
	}
	if (!t) {
		fprintf(stderr, "iscsi-rw: cannot queue command: %s\n", iscsi_get_error(st->iscsi));
		st->failed = 1;
		free(r->buf);
		free(r);
		return;
	}
	st->next_lba += n;
	st->in_flight++;
}

static void usage(void)
{
	fprintf(stderr, "usage: iscsi-rw [-q DEPTH] [-b BLOCKS_PER_CMD] [-s SEED] [-H none|crc32c|any] URL write|verify LBA NBLOCKS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int depth = 8, opt;
	uint32_t bpc = 256;
	uint64_t seed = 1;
	/* HeaderDigest offered: "None" (default), "CRC32C" only, or "CRC32C,None". */
	enum iscsi_header_digest hd = ISCSI_HEADER_DIGEST_NONE;
	while ((opt = getopt(argc, argv, "q:b:s:H:")) != -1) {
		switch (opt) {
		case 'H':
			if (!strcmp(optarg, "crc32c")) hd = ISCSI_HEADER_DIGEST_CRC32C;
			else if (!strcmp(optarg, "any")) hd = ISCSI_HEADER_DIGEST_CRC32C_NONE;
			else if (!strcmp(optarg, "none")) hd = ISCSI_HEADER_DIGEST_NONE;
			else usage();
			break;
		case 'q': depth = atoi(optarg); break;
		case 'b': bpc = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (argc - optind != 4 || depth < 1 || bpc < 1)
		usage();
	const char *url_s = argv[optind];
	const char *mode = argv[optind + 1];
	if (strcmp(mode, "write") && strcmp(mode, "verify"))
		usage();

	struct iscsi_context *iscsi = iscsi_create_context("iqn.2026-11.io.polltgt:test-iscsi-rw");
	if (!iscsi) {
		fprintf(stderr, "iscsi-rw: cannot create context\n");
		return 2;
	}
	struct iscsi_url *url = iscsi_parse_full_url(iscsi, url_s);
	if (!url) {
		fprintf(stderr, "iscsi-rw: bad URL %s: %s\n", url_s, iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, hd);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "iscsi-rw: login failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	struct scsi_task *rc = iscsi_readcapacity16_sync(iscsi, url->lun);
	if (!rc || rc->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "iscsi-rw: READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	struct scsi_readcapacity16 *cap = scsi_datain_unmarshall(rc);
	if (!cap) {
		fprintf(stderr, "iscsi-rw: cannot decode READ CAPACITY(16) data\n");
		return 2;
	}
	struct state st = {
		.iscsi = iscsi,
		.lun = url->lun,
		.writing = strcmp(mode, "write") == 0,
		.block_size = cap->block_length,
		.blocks_per_cmd = bpc,
		.seed = seed,
		.next_lba = strtoull(argv[optind + 2], NULL, 0),
	};
	st.end_lba = st.next_lba + strtoull(argv[optind + 3], NULL, 0);
	if (st.end_lba > cap->returned_lba + 1) {
		fprintf(stderr, "iscsi-rw: range ends at LBA %" PRIu64 ", LUN has %" PRIu64 " blocks\n", st.end_lba,
			(uint64_t)cap->returned_lba + 1);
		return 2;
	}
	scsi_free_scsi_task(rc);

	for (int i = 0; i < depth; i++)
		submit_next(&st);
	while (st.in_flight > 0) {
		struct pollfd pfd = { .fd = iscsi_get_fd(iscsi), .events = iscsi_which_events(iscsi) };
		int n = poll(&pfd, 1, 30000);
		if (n < 0 && errno != EINTR) {
			perror("iscsi-rw: poll");
			return 2;
		}
		if (n == 0) {
			fprintf(stderr, "iscsi-rw: no progress for 30 s with %d commands in flight\n", st.in_flight);
			return 2;
		}
		if (iscsi_service(iscsi, pfd.revents) < 0) {
			fprintf(stderr, "iscsi-rw: iscsi_service failed: %s\n", iscsi_get_error(iscsi));
			return 2;
		}
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	if (st.failed)
		return 1;
	printf("%s %" PRIu64 " blocks of %u bytes OK\n", st.writing ? "wrote" : "verified", st.done_blocks,
	       st.block_size);
	return 0;
}
