/*
 * iscsi-session: keeps one libiscsi session open and runs SCSI commands read from stdin, one per line, so the
 * management tests can change the target while a session runs and observe what the initiator sees.
 *
 *   iscsi-session [-i INITIATOR_NAME] URL
 *
 * After logging in (libiscsi clears the initial unit attention on the URL's LUN) it prints "READY". Commands:
 *
 *   tur LUN            -> "GOOD" | "CHECK <key> <asc> <ascq>" (hex)
 *   reportluns         -> "LUNS <n> <n> ..."
 *   readcap LUN        -> "CAP <blocks> <block_size>" | "CHECK ..."
 *   read LUN LBA       -> one block: "GOOD" | "CHECK ..."
 *   write LUN LBA      -> one block of 0x5a: "GOOD" | "CHECK ..."
 *   inq LUN            -> standard INQUIRY: "INQ <vendor>|<product>|<revision> RMB <0|1>" (trailing blanks cut)
 *   serial LUN         -> VPD page 80h: "USN <unit serial number>"
 *   rotation LUN       -> VPD page B1h: "ROTATION <medium rotation rate>"
 *   modesense LUN      -> MODE SENSE(6), current Caching page: "WP <0|1> WCE <0|1>"
 *   sync LUN           -> SYNCHRONIZE CACHE(10) of the whole LUN: "GOOD" | "CHECK ..."
 *   quit
 *
 * A transport failure prints "ERROR <message>". Automatic reconnection is off, so a session the target closes
 * stays closed. Every answer is one line, flushed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "tool_login.h"

static struct iscsi_context *iscsi;
static int block_size = 512;

/* Cuts the blanks INQUIRY pads its strings with (in place). */
static char *trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
	return s;
}

static int status_line(struct scsi_task *task)
{
	if (task == NULL) {
		printf("ERROR %s\n", iscsi_get_error(iscsi));
		return -1;
	}
	if (task->status == SCSI_STATUS_CHECK_CONDITION) {
		printf("CHECK %02x %02x %02x\n", task->sense.key, (task->sense.ascq >> 8) & 0xff, task->sense.ascq & 0xff);
		return 1;
	}
	if (task->status > 0xff) {
		/* libiscsi's own statuses: cancelled, transport error, ... */
		printf("ERROR status %#x: %s\n", (unsigned)task->status, iscsi_get_error(iscsi));
		return -1;
	}
	if (task->status != SCSI_STATUS_GOOD) {
		printf("STATUS %02x\n", task->status);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct iscsi_url *url;
	int rc = tool_login(argc, argv, "iqn.2026-11.io.polltgt:session-tool", "iscsi-session", &iscsi, &url);
	if (rc != 0)
		return rc;
	printf("READY\n");
	fflush(stdout);

	char line[256];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char cmd[32] = "";
		long long a = 0, b = 0;
		int n = sscanf(line, "%31s %lld %lld", cmd, &a, &b);
		if (n < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		struct scsi_task *task = NULL;
		if (strcmp(cmd, "tur") == 0) {
			task = iscsi_testunitready_sync(iscsi, (int)a);
			if (status_line(task) == 0)
				printf("GOOD\n");
		} else if (strcmp(cmd, "reportluns") == 0) {
			task = iscsi_reportluns_sync(iscsi, 0, 16384);
			if (status_line(task) == 0) {
				struct scsi_reportluns_list *list = scsi_datain_unmarshall(task);
				printf("LUNS");
				for (uint32_t i = 0; list != NULL && i < list->num; i++)
					printf(" %u", list->luns[i]);
				printf("\n");
			}
		} else if (strcmp(cmd, "readcap") == 0) {
			task = iscsi_readcapacity16_sync(iscsi, (int)a);
			if (status_line(task) == 0) {
				struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(task);
				if (rc == NULL) {
					printf("ERROR cannot decode READ CAPACITY(16)\n");
				} else {
					block_size = (int)rc->block_length;
					printf("CAP %llu %u\n", (unsigned long long)rc->returned_lba + 1, rc->block_length);
				}
			}
		} else if (strcmp(cmd, "read") == 0) {
			task = iscsi_read16_sync(iscsi, (int)a, (uint64_t)b, block_size, block_size, 0, 0, 0, 0, 0);
			if (status_line(task) == 0)
				printf("GOOD\n");
		} else if (strcmp(cmd, "write") == 0) {
			unsigned char *buf = malloc(block_size);
			if (buf == NULL)
				return 2;
			memset(buf, 0x5a, block_size);
			task = iscsi_write16_sync(iscsi, (int)a, (uint64_t)b, buf, block_size, block_size, 0, 0, 0, 0, 0);
			free(buf);
			if (status_line(task) == 0)
				printf("GOOD\n");
		} else if (strcmp(cmd, "inq") == 0) {
			task = iscsi_inquiry_sync(iscsi, (int)a, 0, 0, 255);
			if (status_line(task) == 0) {
				struct scsi_inquiry_standard *inq = scsi_datain_unmarshall(task);
				if (inq == NULL) {
					printf("ERROR cannot decode INQUIRY\n");
				} else {
					printf("INQ %s|%s|%s RMB %d\n", trim(inq->vendor_identification),
					       trim(inq->product_identification), trim(inq->product_revision_level), inq->rmb ? 1 : 0);
				}
			}
		} else if (strcmp(cmd, "serial") == 0) {
			task = iscsi_inquiry_sync(iscsi, (int)a, 1, SCSI_INQUIRY_PAGECODE_UNIT_SERIAL_NUMBER, 255);
			if (status_line(task) == 0) {
				struct scsi_inquiry_unit_serial_number *sn = scsi_datain_unmarshall(task);
				if (sn == NULL || sn->usn == NULL)
					printf("ERROR cannot decode VPD page 80h\n");
				else
					printf("USN %s\n", trim(sn->usn));
			}
		} else if (strcmp(cmd, "rotation") == 0) {
			task = iscsi_inquiry_sync(iscsi, (int)a, 1, SCSI_INQUIRY_PAGECODE_BLOCK_DEVICE_CHARACTERISTICS, 255);
			if (status_line(task) == 0) {
				struct scsi_inquiry_block_device_characteristics *bdc = scsi_datain_unmarshall(task);
				if (bdc == NULL)
					printf("ERROR cannot decode VPD page B1h\n");
				else
					printf("ROTATION %d\n", bdc->medium_rotation_rate);
			}
		} else if (strcmp(cmd, "modesense") == 0) {
			task = iscsi_modesense6_sync(iscsi, (int)a, 1, SCSI_MODESENSE_PC_CURRENT, SCSI_MODEPAGE_CACHING, 0, 255);
			if (status_line(task) == 0) {
				struct scsi_mode_sense *ms = scsi_datain_unmarshall(task);
				struct scsi_mode_page *page =
					ms == NULL ? NULL : scsi_modesense_get_page(ms, SCSI_MODEPAGE_CACHING, 0);
				if (page == NULL)
					printf("ERROR cannot decode MODE SENSE\n");
				else
					printf("WP %d WCE %d\n", (ms->device_specific_parameter & 0x80) ? 1 : 0,
					       page->caching.wce ? 1 : 0);
			}
		} else if (strcmp(cmd, "sync") == 0) {
			task = iscsi_synchronizecache10_sync(iscsi, (int)a, 0, 0, 0, 0);
			if (status_line(task) == 0)
				printf("GOOD\n");
		} else {
			printf("ERROR unknown command %s\n", cmd);
		}
		if (task != NULL)
			scsi_free_scsi_task(task);
		fflush(stdout);
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	return 0;
}
