/*
 * iscsi-xcopy: EXTENDED COPY (LID1) between LUNs of one target, for polltgt's integration tests.
 *
 * libiscsi-bin has no tool that sends EXTENDED COPY, so the tests build this one against libiscsi (the reference
 * initiator). It logs in to URL (its LUN is the copy manager), finds the NAA designators of the source and the
 * destination in their Device Identification VPD pages, and sends one EXTENDED COPY with two identification
 * descriptor target descriptors and block device to block device segments of at most 65535 blocks each (SEGMENT
 * blocks with -s), LIST ID USAGE 00b and list identifier 1. Then it asks RECEIVE COPY RESULTS for the copy status
 * and, after a failure, the failed segment details.
 *
 *   iscsi-xcopy [-s SEGMENT] [-a] URL SRC DST SRC_LBA DST_LBA BLOCKS
 *
 * -a sends ABORT TASK for the EXTENDED COPY right after it (the command's own status is then not reported) and
 * prints "abort OK" once the target answered FUNCTION COMPLETE.
 *
 * SRC and DST are LUN numbers of URL's target, or iscsi:// URLs of another target (only their designator is
 * used). BLOCKS counts source blocks. Output, one line each:
 *   xcopy GOOD | xcopy CHECK_CONDITION KEY/ASC/ASCQ segment N
 *   status STATUS segments N bytes N          (COPY STATUS: 1 = completed, 2 = completed with error)
 *   failed STATUS SENSE_LENGTH                 (FAILED SEGMENT DETAILS, after a failure)
 * Exit status 0 when EXTENDED COPY was GOOD, 1 when it failed, 2 on usage or connection errors.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static struct iscsi_context *login(const char *u, int *lun)
{
	struct iscsi_context *iscsi = iscsi_create_context("iqn.2026-11.io.polltgt:xcopy-tool");
	if (iscsi == NULL)
		return NULL;
	struct iscsi_url *url = iscsi_parse_full_url(iscsi, u);
	if (url == NULL) {
		fprintf(stderr, "iscsi-xcopy: %s\n", iscsi_get_error(iscsi));
		return NULL;
	}
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_targetname(iscsi, url->target);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "iscsi-xcopy: login to %s failed: %s\n", u, iscsi_get_error(iscsi));
		return NULL;
	}
	*lun = url->lun;
	/* Clear the unit attentions of a new nexus. */
	for (int i = 0; i < 10; i++) {
		struct scsi_task *t = iscsi_testunitready_sync(iscsi, *lun);
		int good = t != NULL && t->status == SCSI_STATUS_GOOD;
		if (t != NULL)
			scsi_free_scsi_task(t);
		if (good)
			break;
	}
	return iscsi;
}

/* The logical unit NAA designation descriptor (header + designator) of LUN `lun` into `out` (32 bytes). */
static int naa_designator(struct iscsi_context *iscsi, int lun, unsigned char *out)
{
	struct scsi_task *t = NULL;
	for (int i = 0; i < 5; i++) {
		t = iscsi_inquiry_sync(iscsi, lun, 1, 0x83, 255);
		if (t != NULL && t->status == SCSI_STATUS_GOOD)
			break;
		if (t != NULL)
			scsi_free_scsi_task(t);
		t = NULL;
	}
	if (t == NULL)
		return -1;
	int found = -1;
	unsigned char *d = t->datain.data;
	int len = t->datain.size;
	for (int at = 4; at + 4 <= len;) {
		int dlen = d[at + 3];
		if (at + 4 + dlen > len)
			break;
		if (((d[at + 1] >> 4) & 3) == 0 && (d[at + 1] & 0x0f) == 3 && dlen <= 20) {
			memcpy(out, d + at, 4 + dlen);
			found = 0;
			break;
		}
		at += 4 + dlen;
	}
	scsi_free_scsi_task(t);
	return found;
}

/* SRC/DST argument: a LUN of the copy manager's target, or the URL of a LUN elsewhere. */
static int designator_of(struct iscsi_context *iscsi, const char *arg, unsigned char *out)
{
	if (strncmp(arg, "iscsi://", 8) != 0)
		return naa_designator(iscsi, atoi(arg), out);
	int lun;
	struct iscsi_context *other = login(arg, &lun);
	if (other == NULL)
		return -1;
	int r = naa_designator(other, lun, out);
	iscsi_logout_sync(other);
	iscsi_destroy_context(other);
	return r;
}

static void command_done(struct iscsi_context *iscsi, int status, void *data, void *private)
{
	(void)iscsi;
	(void)status;
	(void)data;
	*(int *)private = 1;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }
static void put64(unsigned char *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, v); }

int main(int argc, char **argv)
{
	uint32_t segment_blocks = 65535;
	int abort_it = 0;
	int a = 1;
	for (;;) {
		if (a + 1 < argc && strcmp(argv[a], "-s") == 0) {
			segment_blocks = strtoul(argv[a + 1], NULL, 0);
			a += 2;
		} else if (a < argc && strcmp(argv[a], "-a") == 0) {
			abort_it = 1;
			a += 1;
		} else {
			break;
		}
	}
	if (argc - a != 6 || segment_blocks == 0 || segment_blocks > 65535) {
		fprintf(stderr, "usage: iscsi-xcopy [-s SEGMENT] [-a] URL SRC DST SRC_LBA DST_LBA BLOCKS\n");
		return 2;
	}
	int lun;
	struct iscsi_context *iscsi = login(argv[a], &lun);
	if (iscsi == NULL)
		return 2;
	uint64_t src_lba = strtoull(argv[a + 3], NULL, 0);
	uint64_t dst_lba = strtoull(argv[a + 4], NULL, 0);
	uint64_t blocks = strtoull(argv[a + 5], NULL, 0);
	unsigned char des[2][32];
	memset(des, 0, sizeof(des));
	for (int i = 0; i < 2; i++) {
		if (designator_of(iscsi, argv[a + 1 + i], des[i]) != 0) {
			fprintf(stderr, "iscsi-xcopy: no NAA designator for %s\n", argv[a + 1 + i]);
			return 2;
		}
	}
	/* Block sizes from READ CAPACITY(10) of the LUNs named by number (512 for other targets' LUNs). */
	uint32_t bs[2] = {512, 512};
	for (int i = 0; i < 2; i++) {
		if (strncmp(argv[a + 1 + i], "iscsi://", 8) == 0)
			continue;
		/* Retried: the first command of the session to another LUN gets its unit attention. */
		for (int k = 0; k < 5; k++) {
			struct scsi_task *t = iscsi_readcapacity10_sync(iscsi, atoi(argv[a + 1 + i]), 0, 0);
			struct scsi_readcapacity10 *rc =
				t != NULL && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
			if (rc != NULL)
				bs[i] = rc->block_size;
			if (t != NULL)
				scsi_free_scsi_task(t);
			if (rc != NULL)
				break;
		}
	}
	int nseg = (int)((blocks + segment_blocks - 1) / segment_blocks);
	int len = 16 + 64 + 28 * nseg;
	unsigned char *p = calloc(1, len);
	p[0] = 1; /* LIST IDENTIFIER; LIST ID USAGE 00b: hold the results */
	put16(p + 2, 64);
	put32(p + 8, 28 * nseg);
	for (int i = 0; i < 2; i++) {
		unsigned char *t = p + 16 + 32 * i;
		t[0] = 0xE4;
		t[4] = des[i][0] & 0x0f;
		t[5] = des[i][1] & 0x3f;
		t[7] = des[i][3];
		memcpy(t + 8, des[i] + 4, des[i][3]);
		t[29] = bs[i] >> 16;
		t[30] = bs[i] >> 8;
		t[31] = bs[i];
	}
	uint64_t done = 0;
	for (int i = 0; i < nseg; i++) {
		unsigned char *s = p + 80 + 28 * i;
		uint64_t n = blocks - done < segment_blocks ? blocks - done : segment_blocks;
		s[0] = 0x02;
		put16(s + 2, 0x18);
		put16(s + 4, 0);
		put16(s + 6, 1);
		put16(s + 10, (uint16_t)n);
		put64(s + 12, src_lba + done);
		put64(s + 20, dst_lba + done * bs[0] / bs[1]);
		done += n;
	}
	struct scsi_task *t = scsi_cdb_extended_copy(len);
	struct iscsi_data data = {.size = len, .data = p};
	if (abort_it) {
		int finished = 0;
		if (iscsi_scsi_command_async(iscsi, lun, t, command_done, &data, &finished) != 0) {
			fprintf(stderr, "iscsi-xcopy: cannot send EXTENDED COPY: %s\n", iscsi_get_error(iscsi));
			return 2;
		}
		/* Put the command on the wire first: libiscsi sends immediate PDUs (the TMF) ahead of queued ones. */
		while (iscsi_out_queue_length(iscsi) > 0 && !finished) {
			struct pollfd pfd = {.fd = iscsi_get_fd(iscsi), .events = iscsi_which_events(iscsi)};
			if (poll(&pfd, 1, 1000) < 0 || iscsi_service(iscsi, pfd.revents) < 0) {
				fprintf(stderr, "iscsi-xcopy: %s\n", iscsi_get_error(iscsi));
				return 2;
			}
		}
		if (finished) {
			fprintf(stderr, "iscsi-xcopy: EXTENDED COPY ended before ABORT TASK was sent\n");
			return 2;
		}
		if (iscsi_task_mgmt_abort_task_sync(iscsi, t) != 0) {
			fprintf(stderr, "iscsi-xcopy: ABORT TASK failed: %s\n", iscsi_get_error(iscsi));
			return 2;
		}
		printf("abort OK\n");
		t = NULL;
	} else {
		t = iscsi_scsi_command_sync(iscsi, lun, t, &data);
	}
	int good = 0;
	if (abort_it) {
		/* The status of the aborted command is not reported; COPY STATUS tells how far it got. */
	} else
	if (t == NULL) {
		fprintf(stderr, "iscsi-xcopy: EXTENDED COPY failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	} else {
		good = t->status == SCSI_STATUS_GOOD;
		if (good) {
			printf("xcopy GOOD\n");
		} else if (t->status == SCSI_STATUS_CHECK_CONDITION) {
			unsigned char *sd = t->datain.data + 2; /* sense data after the 2-byte length */
			int seg = t->datain.size >= 14 && sd[0] == 0x70 ? (sd[10] << 8 | sd[11]) : -1;
			printf("xcopy CHECK_CONDITION %02X/%02X/%02X segment %d\n", t->sense.key,
			       (t->sense.ascq >> 8) & 0xff, t->sense.ascq & 0xff, seg);
		} else {
			printf("xcopy STATUS %d\n", t->status);
		}
		scsi_free_scsi_task(t);
	}
	t = iscsi_scsi_command_sync(iscsi, lun, scsi_cdb_receive_copy_results(SCSI_COPY_RESULTS_COPY_STATUS, 1, 64), NULL);
	if (t != NULL && t->status == SCSI_STATUS_GOOD && t->datain.size >= 12) {
		unsigned char *d = t->datain.data;
		uint64_t count = (uint64_t)d[8] << 24 | d[9] << 16 | d[10] << 8 | d[11];
		printf("status %d segments %d bytes %" PRIu64 "\n", d[4] & 0x7f, d[5] << 8 | d[6], count << (10 * d[7]));
	} else {
		printf("status none\n");
	}
	if (t != NULL)
		scsi_free_scsi_task(t);
	if (!good && !abort_it) {
		t = iscsi_scsi_command_sync(iscsi, lun,
			scsi_cdb_receive_copy_results(SCSI_COPY_RESULTS_FAILED_SEGMENT, 1, 1024), NULL);
		if (t != NULL && t->status == SCSI_STATUS_GOOD && t->datain.size >= 60)
			printf("failed %d %d\n", t->datain.data[56], t->datain.data[58] << 8 | t->datain.data[59]);
		if (t != NULL)
			scsi_free_scsi_task(t);
	}
	free(p);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return good || abort_it ? 0 : 1;
}
