/*
 * iscsi-pr: persistent reservation commands over one libiscsi session, for polltgt's integration tests.
 *
 * libiscsi-bin has no tool that sends PERSISTENT RESERVE OUT, and sg_persist needs a kernel SCSI device, so the
 * tests build this one against libiscsi (the reference initiator). The initiator port is fixed by -i NAME and
 * -e QUALIFIER (an ISID of the IANA enterprise number type with that qualifier), so that a later run is the same I_T
 * nexus: registrations belong to the nexus, not to the session.
 *
 *   iscsi-pr -i INITIATOR -e QUALIFIER URL COMMAND...
 *
 * Commands run in order on one session; each prints one line:
 *   register KEY [aptpl]   PROUT REGISTER AND IGNORE EXISTING KEY, SERVICE ACTION RESERVATION KEY = KEY
 *   reserve KEY TYPE       PROUT RESERVE        -> "reserve STATUS"
 *   release KEY TYPE       PROUT RELEASE        -> "release STATUS"
 *   keys                   PRIN READ KEYS       -> "keys GENERATION KEY..."
 *   reservation            PRIN READ RESERVATION -> "reservation none" | "reservation KEY TYPE"
 *   caps                   PRIN REPORT CAPABILITIES -> "caps PTPL_A"
 *   preempt-abort KEY SARK TYPE   PROUT PREEMPT AND ABORT -> "preempt-abort STATUS"
 *   read | write | tur     READ(10) / WRITE(10) of LBA 1, TEST UNIT READY -> "read STATUS"
 *   wait                   prints "waiting" and reads a line from stdin (lets a test order two initiators)
 * STATUS is GOOD, RESERVATION_CONFLICT or CHECK_CONDITION/ASC/ASCQ (hexadecimal). KEY is hexadecimal. Unit
 * attentions are cleared with TEST UNIT READY before the first command. Exit status 0 when every command got an
 * answer, 2 on usage or connection errors.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static const char *status_name(struct scsi_task *t)
{
	static char buf[64];
	if (t->status == SCSI_STATUS_CHECK_CONDITION) {
		snprintf(buf, sizeof(buf), "CHECK_CONDITION/%02X/%02X", (t->sense.ascq >> 8) & 0xff, t->sense.ascq & 0xff);
		return buf;
	}
	switch (t->status) {
	case SCSI_STATUS_GOOD:
		return "GOOD";
	case SCSI_STATUS_RESERVATION_CONFLICT:
		return "RESERVATION_CONFLICT";
	default:
		return "OTHER";
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: iscsi-pr -i INITIATOR -e QUALIFIER URL COMMAND...\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *initiator = NULL;
	uint32_t qualifier = 0;
	int a = 1;
	while (a + 1 < argc && argv[a][0] == '-') {
		if (strcmp(argv[a], "-i") == 0)
			initiator = argv[a + 1];
		else if (strcmp(argv[a], "-e") == 0)
			qualifier = (uint32_t)strtoul(argv[a + 1], NULL, 0);
		else
			return usage();
		a += 2;
	}
	if (initiator == NULL || a >= argc)
		return usage();
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	if (iscsi == NULL)
		return 2;
	/* Enterprise number 44400 (any fixed value will do) and the caller's qualifier. */
	iscsi_set_isid_en(iscsi, 44400, qualifier);
	struct iscsi_url *url = iscsi_parse_full_url(iscsi, argv[a++]);
	if (url == NULL) {
		fprintf(stderr, "iscsi-pr: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_targetname(iscsi, url->target);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "iscsi-pr: login failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	int lun = url->lun;
	for (int i = 0; i < 10; i++) {
		struct scsi_task *t = iscsi_testunitready_sync(iscsi, lun);
		int good = t != NULL && t->status == SCSI_STATUS_GOOD;
		if (t != NULL)
			scsi_free_scsi_task(t);
		if (good)
			break;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	unsigned char block[512];
	memset(block, 0x5a, sizeof(block));
	while (a < argc) {
		const char *cmd = argv[a++];
		struct scsi_task *t = NULL;
		if (strcmp(cmd, "register") == 0 && a < argc) {
			struct scsi_persistent_reserve_out_basic p = {0};
			p.service_action_reservation_key = strtoull(argv[a++], NULL, 16);
			if (a < argc && strcmp(argv[a], "aptpl") == 0) {
				p.aptpl = 1;
				a++;
			}
			t = iscsi_persistent_reserve_out_sync(iscsi, lun,
				SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, &p);
			if (t != NULL)
				printf("register %s\n", status_name(t));
		} else if ((strcmp(cmd, "reserve") == 0 || strcmp(cmd, "release") == 0) && a + 1 < argc) {
			struct scsi_persistent_reserve_out_basic p = {0};
			p.reservation_key = strtoull(argv[a++], NULL, 16);
			int type = atoi(argv[a++]);
			int sa = cmd[2] == 's' ? SCSI_PERSISTENT_RESERVE_RESERVE : SCSI_PERSISTENT_RESERVE_RELEASE;
			t = iscsi_persistent_reserve_out_sync(iscsi, lun, sa, 0, type, &p);
			if (t != NULL)
				printf("%s %s\n", cmd, status_name(t));
		} else if (strcmp(cmd, "keys") == 0) {
			t = iscsi_persistent_reserve_in_sync(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 4096);
			struct scsi_persistent_reserve_in_read_keys *rk =
				t != NULL && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
			if (rk == NULL) {
				printf("keys %s\n", t != NULL ? status_name(t) : "ERROR");
			} else {
				printf("keys %" PRIu32, rk->prgeneration);
				for (int k = 0; k < rk->num_keys; k++)
					printf(" %" PRIx64, rk->keys[k]);
				printf("\n");
			}
		} else if (strcmp(cmd, "reservation") == 0) {
			t = iscsi_persistent_reserve_in_sync(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 4096);
			struct scsi_persistent_reserve_in_read_reservation *rr =
				t != NULL && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
			if (rr == NULL)
				printf("reservation %s\n", t != NULL ? status_name(t) : "ERROR");
			else if (!rr->reserved)
				printf("reservation none\n");
			else
				printf("reservation %" PRIx64 " %d\n", rr->reservation_key, rr->pr_type);
		} else if (strcmp(cmd, "caps") == 0) {
			t = iscsi_persistent_reserve_in_sync(iscsi, lun, SCSI_PERSISTENT_RESERVE_REPORT_CAPABILITIES, 8);
			if (t != NULL && t->status == SCSI_STATUS_GOOD && t->datain.size >= 4)
				printf("caps %d\n", t->datain.data[3] & 1);
			else
				printf("caps %s\n", t != NULL ? status_name(t) : "ERROR");
		} else if (strcmp(cmd, "preempt-abort") == 0 && a + 2 < argc) {
			struct scsi_persistent_reserve_out_basic p = {0};
			p.reservation_key = strtoull(argv[a++], NULL, 16);
			p.service_action_reservation_key = strtoull(argv[a++], NULL, 16);
			int type = atoi(argv[a++]);
			t = iscsi_persistent_reserve_out_sync(iscsi, lun, SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT, 0, type, &p);
			if (t != NULL)
				printf("preempt-abort %s\n", status_name(t));
		} else if (strcmp(cmd, "wait") == 0) {
			char line[16];
			printf("waiting\n");
			if (fgets(line, sizeof(line), stdin) == NULL)
				return 2;
			continue;
		} else if (strcmp(cmd, "tur") == 0) {
			t = iscsi_testunitready_sync(iscsi, lun);
			if (t != NULL)
				printf("tur %s\n", status_name(t));
		} else if (strcmp(cmd, "read") == 0) {
			t = iscsi_read10_sync(iscsi, lun, 1, 512, 512, 0, 0, 0, 0, 0);
			if (t != NULL)
				printf("read %s\n", status_name(t));
		} else if (strcmp(cmd, "write") == 0) {
			t = iscsi_write10_sync(iscsi, lun, 1, block, 512, 512, 0, 0, 0, 0, 0);
			if (t != NULL)
				printf("write %s\n", status_name(t));
		} else {
			return usage();
		}
		if (t == NULL) {
			fprintf(stderr, "iscsi-pr: %s failed: %s\n", cmd, iscsi_get_error(iscsi));
			return 2;
		}
		scsi_free_scsi_task(t);
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return 0;
}
