/*
 * iscsi-sanitize: one libiscsi session that starts a SANITIZE OVERWRITE, polls it, sends task management functions
 * while it runs and reads the medium back; commands from stdin, one per line, one answer line each (the protocol of
 * iscsi-session.c, so tests/common's Session drives it).
 *
 *   iscsi-sanitize [-i INITIATOR_NAME] URL
 *
 * After logging in (libiscsi clears the initial unit attention on the URL's LUN) it prints "READY". Commands:
 *
 *   overwrite LUN IMMED PASSES -> SANITIZE OVERWRITE of LUN with one block of 0xa5 as the pattern, OWCOUNT PASSES,
 *                                 INVERT set. IMMED 1: waits for the status ("GOOD" | "CHECK ..."). IMMED 0: sent
 *                                 without waiting, "SENT"; its status is collected by `status`.
 *   status                     -> the status of the SANITIZE sent by `overwrite ... 0`: "PENDING" while it has
 *                                 none, then "GOOD" | "CHECK ..." | "STATUS <hex>" (an aborted task: "STATUS 40"
 *                                 or libiscsi's cancelled status)
 *   abort                      -> ABORT TASK of that SANITIZE: "TMF <response>"
 *   abortset LUN | lunreset LUN | warmreset -> ABORT TASK SET, LOGICAL UNIT RESET, TARGET WARM RESET: "TMF <response>"
 *   tur LUN                    -> "GOOD" | "CHECK <key> <asc> <ascq>" (hex)
 *   sense LUN                  -> REQUEST SENSE (fixed format): "SENSE <key> <asc> <ascq> <progress>", progress the
 *                                 sense-key-specific PROGRESS INDICATION in decimal, or -1 without SKSV
 *   block LUN LBA              -> READ (16) of one block: "BYTE <hex>" when every byte is the same, else "MIXED"
 *   quit
 *
 * A transport failure prints "ERROR <message>". Every answer is one line, flushed.
 */
#include <poll.h>
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
static struct scsi_task *sanitize_task;
static int sanitize_done;
static int sanitize_status;
static struct scsi_sense sanitize_sense;

static void sanitize_cb(struct iscsi_context *ctx, int status, void *command_data, void *private_data)
{
	(void)ctx;
	(void)command_data;
	(void)private_data;
	sanitize_done = 1;
	sanitize_status = status;
	if (sanitize_task != NULL)
		sanitize_sense = sanitize_task->sense;
}

static void print_status(int status, const struct scsi_sense *sense)
{
	if (status == SCSI_STATUS_GOOD)
		printf("GOOD\n");
	else if (status == SCSI_STATUS_CHECK_CONDITION)
		printf("CHECK %02x %02x %02x\n", sense->key, (sense->ascq >> 8) & 0xff, sense->ascq & 0xff);
	else
		printf("STATUS %x\n", (unsigned)status);
}

static int status_line(struct scsi_task *task)
{
	if (task == NULL) {
		printf("ERROR %s\n", iscsi_get_error(iscsi));
		return -1;
	}
	if (task->status != SCSI_STATUS_GOOD) {
		print_status(task->status, &task->sense);
		return 1;
	}
	return 0;
}

/* Lets libiscsi read what arrived (the status of the SANITIZE sent without waiting). */
static void service(int timeout_ms)
{
	struct pollfd pfd = { .fd = iscsi_get_fd(iscsi), .events = iscsi_which_events(iscsi) };
	if (poll(&pfd, 1, timeout_ms) > 0)
		iscsi_service(iscsi, pfd.revents);
}

static void tmf_line(int ret)
{
	if (ret != 0)
		printf("ERROR %s\n", iscsi_get_error(iscsi));
	else
		printf("TMF done\n");
}

int main(int argc, char **argv)
{
	struct iscsi_url *url;
	int rc = tool_login(argc, argv, "iqn.2026-11.io.polltgt:sanitize-tool", "iscsi-sanitize", &iscsi, &url);
	if (rc != 0)
		return rc;
	printf("READY\n");
	fflush(stdout);

	char line[256];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char cmd[32] = "";
		long long a = 0, b = 0, c = 0;
		int n = sscanf(line, "%31s %lld %lld %lld", cmd, &a, &b, &c);
		if (n < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		struct scsi_task *task = NULL;
		if (strcmp(cmd, "overwrite") == 0) {
			/* Kept until the end: libiscsi may still send it (R2T) after the command was queued. */
			static unsigned char param[4 + 4096];
			struct iscsi_data data;
			data.size = block_size + 4;
			data.data = param;
			memset(data.data, 0xa5, data.size);
			data.data[0] = 0x80 | ((unsigned char)c & 0x1f); /* INVERT, OWCOUNT */
			data.data[1] = 0;
			data.data[2] = (unsigned char)(block_size >> 8);
			data.data[3] = (unsigned char)(block_size & 0xff);
			if (b) {
				task = iscsi_sanitize_sync(iscsi, (int)a, 1, 0, SCSI_SANITIZE_OVERWRITE, (int)data.size, &data);
				if (status_line(task) == 0)
					printf("GOOD\n");
			} else {
				sanitize_done = 0;
				sanitize_task = iscsi_sanitize_task(iscsi, (int)a, 0, 0, SCSI_SANITIZE_OVERWRITE, (int)data.size,
								    &data, sanitize_cb, NULL);
				/* Queued only: push it out to the target before answering. */
				for (int i = 0; sanitize_task != NULL && i < 100 && (iscsi_which_events(iscsi) & POLLOUT); i++)
					service(100);
				if (sanitize_task == NULL)
					printf("ERROR %s\n", iscsi_get_error(iscsi));
				else
					printf("SENT\n");
			}
		} else if (strcmp(cmd, "status") == 0) {
			service(100);
			if (sanitize_task == NULL)
				printf("ERROR nothing sent\n");
			else if (!sanitize_done)
				printf("PENDING\n");
			else
				print_status(sanitize_status, &sanitize_sense);
		} else if (strcmp(cmd, "abort") == 0) {
			if (sanitize_task == NULL)
				printf("ERROR nothing sent\n");
			else
				tmf_line(iscsi_task_mgmt_abort_task_sync(iscsi, sanitize_task));
		} else if (strcmp(cmd, "abortset") == 0) {
			tmf_line(iscsi_task_mgmt_abort_task_set_sync(iscsi, (uint32_t)a));
		} else if (strcmp(cmd, "lunreset") == 0) {
			tmf_line(iscsi_task_mgmt_lun_reset_sync(iscsi, (uint32_t)a));
		} else if (strcmp(cmd, "warmreset") == 0) {
			tmf_line(iscsi_task_mgmt_target_warm_reset_sync(iscsi));
		} else if (strcmp(cmd, "tur") == 0) {
			task = iscsi_testunitready_sync(iscsi, (int)a);
			if (status_line(task) == 0)
				printf("GOOD\n");
		} else if (strcmp(cmd, "sense") == 0) {
			unsigned char cdb[6] = { 0x03, 0, 0, 0, 252, 0 };
			task = scsi_create_task(6, cdb, SCSI_XFER_READ, 252);
			if (task == NULL)
				return 2;
			if (iscsi_scsi_command_sync(iscsi, (int)a, task, NULL) == NULL) {
				printf("ERROR %s\n", iscsi_get_error(iscsi));
			} else if (status_line(task) == 0) {
				const unsigned char *d = task->datain.data;
				if (task->datain.size < 18 || d == NULL) {
					printf("ERROR short sense data\n");
				} else {
					int progress = (d[15] & 0x80) ? (d[16] << 8 | d[17]) : -1;
					printf("SENSE %02x %02x %02x %d\n", d[2] & 0x0f, d[12], d[13], progress);
				}
			}
		} else if (strcmp(cmd, "block") == 0) {
			task = iscsi_read16_sync(iscsi, (int)a, (uint64_t)b, block_size, block_size, 0, 0, 0, 0, 0);
			if (status_line(task) == 0) {
				const unsigned char *d = task->datain.data;
				int same = d != NULL && task->datain.size == block_size;
				for (int i = 1; same && i < block_size; i++)
					same = d[i] == d[0];
				if (same)
					printf("BYTE %02x\n", d[0]);
				else
					printf("MIXED\n");
			}
		} else {
			printf("ERROR unknown command %s\n", cmd);
		}
		if (task != NULL)
			scsi_free_scsi_task(task);
		fflush(stdout);
	}
	iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	return 0;
}
