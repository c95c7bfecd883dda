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

static struct iscsi_context *iscsi;
static int block_size = 512;

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
	const char *initiator = "iqn.2026-11.io.polltgt:session-tool";
	int opt;
	while ((opt = getopt(argc, argv, "i:")) != -1) {
		if (opt == 'i')
			initiator = optarg;
		else {
			fprintf(stderr, "usage: iscsi-session [-i INITIATOR_NAME] URL\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: iscsi-session [-i INITIATOR_NAME] URL\n");
		return 2;
	}
	iscsi = iscsi_create_context(initiator);
	if (iscsi == NULL) {
		fprintf(stderr, "cannot create a context\n");
		return 2;
	}
	struct iscsi_url *url = iscsi_parse_full_url(iscsi, argv[optind]);
	if (url == NULL) {
		fprintf(stderr, "bad URL: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	iscsi_set_noautoreconnect(iscsi, 1);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		printf("LOGIN FAILED %s\n", iscsi_get_error(iscsi));
		fflush(stdout);
		return 1;
	}
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
