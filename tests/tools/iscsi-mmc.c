/*
 * iscsi-mmc: MMC (CD-ROM) commands over one libiscsi session, read from stdin one per line, for polltgt's vcdrom
 * integration tests. libiscsi-bin has no tool for READ TOC, GET CONFIGURATION or GET EVENT STATUS NOTIFICATION, and
 * the tests need one session kept open while the management plane changes the medium.
 *
 *   iscsi-mmc URL
 *
 * After logging in (libiscsi clears the POWER ON unit attention of the URL's LUN) it prints "READY".
 * Commands, each answered with one line ("CHECK KEY ASC ASCQ" in hexadecimal on CHECK CONDITION):
 *
 *   tur                 -> GOOD
 *   capacity            -> CAP LAST_LBA BLOCK_LENGTH                          READ CAPACITY(10)
 *   read LBA            -> DATA HEX (the first 8 bytes of the 2048-byte block)   READ(10)
 *   toc MSF             -> TOC FIRST LAST TRACK:ADDRESS...                     READ TOC/PMA/ATIP format 0
 *   config RT START     -> CONFIG PROFILE FEATURE[*]...  (* = current)         GET CONFIGURATION
 *   event               -> EVENT CODE STATUS                                   GET EVENT STATUS NOTIFICATION
 *   discinfo            -> DISC STATUS SESSIONS FIRST LAST                     READ DISC INFORMATION
 *   caps                -> CAPS BYTE6                                          MODE SENSE(10) page 2Ah
 *   prevent | allow     -> GOOD                                                PREVENT ALLOW MEDIUM REMOVAL
 *   eject | load        -> GOOD                                                START STOP UNIT with LOEJ
 *   quit
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static struct iscsi_context *iscsi;
static int lun;

/* Sends `cdb`; returns the task on GOOD (the caller frees it), prints the failure and returns NULL otherwise. */
static struct scsi_task *command(const unsigned char *cdb, int len, int alloc)
{
	struct scsi_task *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	memcpy(t->cdb, cdb, len);
	t->cdb_size = len;
	t->xfer_dir = alloc > 0 ? SCSI_XFER_READ : SCSI_XFER_NONE;
	t->expxferlen = alloc;
	t = iscsi_scsi_command_sync(iscsi, lun, t, NULL);
	if (t == NULL) {
		printf("ERROR %s\n", iscsi_get_error(iscsi));
		return NULL;
	}
	if (t->status == SCSI_STATUS_CHECK_CONDITION) {
		printf("CHECK %02x %02x %02x\n", t->sense.key, (t->sense.ascq >> 8) & 0xff, t->sense.ascq & 0xff);
		scsi_free_scsi_task(t);
		return NULL;
	}
	if (t->status != SCSI_STATUS_GOOD) {
		printf("STATUS %02x\n", t->status);
		scsi_free_scsi_task(t);
		return NULL;
	}
	return t;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: iscsi-mmc URL\n");
		return 2;
	}
	iscsi = iscsi_create_context("iqn.2026-11.io.polltgt:mmc-tool");
	struct iscsi_url *url = iscsi == NULL ? NULL : iscsi_parse_full_url(iscsi, argv[1]);
	if (url == NULL) {
		fprintf(stderr, "bad URL\n");
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_noautoreconnect(iscsi, 1);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		printf("LOGIN FAILED %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	lun = url->lun;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("READY\n");

	char line[256];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char cmd[32] = "";
		long a = 0, b = 0;
		if (sscanf(line, "%31s %li %li", cmd, &a, &b) < 1)
			continue;
		struct scsi_task *t = NULL;
		if (strcmp(cmd, "quit") == 0) {
			break;
		} else if (strcmp(cmd, "tur") == 0) {
			unsigned char c[6] = {0x00};
			if ((t = command(c, 6, 0)) != NULL)
				printf("GOOD\n");
		} else if (strcmp(cmd, "capacity") == 0) {
			unsigned char c[10] = {0x25};
			if ((t = command(c, 10, 8)) != NULL && t->datain.size >= 8)
				printf("CAP %u %u\n", be32(t->datain.data), be32(t->datain.data + 4));
		} else if (strcmp(cmd, "read") == 0) {
			unsigned char c[10] = {0x28, 0, a >> 24, a >> 16, a >> 8, a, 0, 0, 1, 0};
			if ((t = command(c, 10, 2048)) != NULL && t->datain.size >= 8) {
				printf("DATA");
				for (int i = 0; i < 8; i++)
					printf(" %02x", t->datain.data[i]);
				printf("\n");
			}
		} else if (strcmp(cmd, "toc") == 0) {
			unsigned char c[10] = {0x43, a ? 0x02 : 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0};
			if ((t = command(c, 10, 0x300)) != NULL && t->datain.size >= 4) {
				unsigned char *d = t->datain.data;
				printf("TOC %d %d", d[2], d[3]);
				for (int at = 4; at + 8 <= t->datain.size; at += 8)
					printf(" %x:%08x", d[at + 2], be32(d + at + 4));
				printf("\n");
			}
		} else if (strcmp(cmd, "config") == 0) {
			unsigned char c[10] = {0x46, a & 3, b >> 8, b, 0, 0, 0, 0x04, 0x00, 0};
			if ((t = command(c, 10, 1024)) != NULL && t->datain.size >= 8) {
				unsigned char *d = t->datain.data;
				printf("CONFIG %04x", d[6] << 8 | d[7]);
				for (int at = 8; at + 4 <= t->datain.size; at += 4 + d[at + 3])
					printf(" %04x%s", d[at] << 8 | d[at + 1], d[at + 2] & 1 ? "*" : "");
				printf("\n");
			}
		} else if (strcmp(cmd, "event") == 0) {
			unsigned char c[10] = {0x4A, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0};
			if ((t = command(c, 10, 8)) != NULL && t->datain.size >= 6)
				printf("EVENT %d %d\n", t->datain.data[4] & 0x0f, t->datain.data[5]);
		} else if (strcmp(cmd, "discinfo") == 0) {
			unsigned char c[10] = {0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0};
			if ((t = command(c, 10, 34)) != NULL && t->datain.size >= 7) {
				unsigned char *d = t->datain.data;
				printf("DISC %02x %d %d %d\n", d[2], d[4], d[5], d[6]);
			}
		} else if (strcmp(cmd, "caps") == 0) {
			unsigned char c[10] = {0x5A, 0x08, 0x2A, 0, 0, 0, 0, 0, 255, 0};
			if ((t = command(c, 10, 255)) != NULL && t->datain.size >= 16)
				printf("CAPS %02x\n", t->datain.data[8 + 6]);
		} else if (strcmp(cmd, "prevent") == 0 || strcmp(cmd, "allow") == 0) {
			unsigned char c[6] = {0x1E, 0, 0, 0, cmd[0] == 'p' ? 1 : 0, 0};
			if ((t = command(c, 6, 0)) != NULL)
				printf("GOOD\n");
		} else if (strcmp(cmd, "eject") == 0 || strcmp(cmd, "load") == 0) {
			unsigned char c[6] = {0x1B, 0, 0, 0, cmd[0] == 'l' ? 0x03 : 0x02, 0};
			if ((t = command(c, 6, 0)) != NULL)
				printf("GOOD\n");
		} else {
			printf("ERROR unknown command %s\n", cmd);
		}
		if (t != NULL)
			scsi_free_scsi_task(t);
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return 0;
}
