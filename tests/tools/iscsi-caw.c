/*
 * iscsi-caw: increments a counter in one logical block with COMPARE AND WRITE, for polltgt's atomicity test.
 *
 *   iscsi-caw URL LBA COUNT
 *
 * Reads the block at LBA (the counter is its first 8 bytes, little endian; the rest of the block repeats the
 * counter's low byte), then sends COMPARE AND WRITE with the block as read as verify data and the incremented block
 * as write data; a MISCOMPARE means another initiator got there first, so it reads again and retries. After COUNT
 * successful increments it prints the number of miscompares and the counter as read afterwards. COUNT 0 only
 * prints the counter. Exit status 0 on success, 1 on any other SCSI error, 2 on usage or connection errors.
 *
 * Several of these running at once against one block end with the counter at the sum of their COUNTs only if every
 * COMPARE AND WRITE was atomic: two that both compared against the same value would lose an increment.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static uint64_t get_counter(const unsigned char *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static void put_counter(unsigned char *b, uint64_t v, uint32_t block_size)
{
	memset(b, (int)(v & 0xff), block_size);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s URL LBA COUNT\n", argv[0]);
		return 2;
	}
	uint64_t lba = strtoull(argv[2], NULL, 0);
	long count = strtol(argv[3], NULL, 0);
	struct iscsi_context *iscsi = iscsi_create_context("iqn.2026-11.io.polltgt:iscsi-caw");
	struct iscsi_url *url = iscsi ? iscsi_parse_full_url(iscsi, argv[1]) : NULL;
	if (url == NULL) {
		fprintf(stderr, "bad URL %s\n", argv[1]);
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	int lun = url->lun;
	struct scsi_task *t = iscsi_readcapacity10_sync(iscsi, lun, 0, 0);
	struct scsi_readcapacity10 *rc = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
	if (rc == NULL) {
		fprintf(stderr, "READ CAPACITY failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	uint32_t bs = rc->block_size;
	scsi_free_scsi_task(t);
	unsigned char *buf = malloc(2 * (size_t)bs);
	long done = 0, miscompares = 0;
	uint64_t last = 0;
	for (;;) {
		t = iscsi_read16_sync(iscsi, lun, lba, bs, bs, 0, 0, 0, 0, 0);
		if (t == NULL || t->status != SCSI_STATUS_GOOD || t->datain.size < (int)bs) {
			fprintf(stderr, "READ failed: %s\n", iscsi_get_error(iscsi));
			return 1;
		}
		memcpy(buf, t->datain.data, bs);
		scsi_free_scsi_task(t);
		last = get_counter(buf);
		if (done == count)
			break;
		put_counter(buf + bs, last + 1, bs);
		t = iscsi_compareandwrite_sync(iscsi, lun, lba, buf, 2 * bs, bs, 0, 0, 0, 0, 0);
		if (t == NULL) {
			fprintf(stderr, "COMPARE AND WRITE failed: %s\n", iscsi_get_error(iscsi));
			return 1;
		}
		if (t->status == SCSI_STATUS_GOOD) {
			done++;
		} else if (t->status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_MISCOMPARE) {
			miscompares++;
		} else {
			fprintf(stderr, "COMPARE AND WRITE: status %d sense %x/%04x\n", t->status, t->sense.key,
				t->sense.ascq);
			return 1;
		}
		scsi_free_scsi_task(t);
	}
	printf("miscompares %ld counter %" PRIu64 "\n", miscompares, last);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	free(buf);
	return 0;
}
