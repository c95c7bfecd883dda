/*
 * tool_login.h: what the interactive test tools (iscsi-session, iscsi-sanitize) share: the command line
 * "NAME [-i INITIATOR_NAME] URL" and a normal-session login to the URL's LUN (CRC32C header digest offered, automatic
 * reconnection off, so a session the target closes stays closed). Included by one .c file per tool.
 */
#ifndef TOOL_LOGIN_H
#define TOOL_LOGIN_H

#include <stdio.h>
#include <unistd.h>

#include <iscsi/iscsi.h>

/*
 * Parses the command line and logs in. Returns 0 with *ctx and *url set, or the exit status: 2 for a usage error or
 * a bad URL (message on stderr), 1 when the login fails ("LOGIN FAILED <reason>" on stdout, which the tests read).
 */
static int tool_login(int argc, char **argv, const char *initiator, const char *name, struct iscsi_context **ctx,
		      struct iscsi_url **url)
{
	int opt;
	while ((opt = getopt(argc, argv, "i:")) != -1) {
		if (opt != 'i') {
			fprintf(stderr, "usage: %s [-i INITIATOR_NAME] URL\n", name);
			return 2;
		}
		initiator = optarg;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: %s [-i INITIATOR_NAME] URL\n", name);
		return 2;
	}
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	if (iscsi == NULL) {
		fprintf(stderr, "cannot create a context\n");
		return 2;
	}
	struct iscsi_url *u = iscsi_parse_full_url(iscsi, argv[optind]);
	if (u == NULL) {
		fprintf(stderr, "bad URL: %s\n", iscsi_get_error(iscsi));
		iscsi_destroy_context(iscsi);
		return 2;
	}
	iscsi_set_targetname(iscsi, u->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	iscsi_set_noautoreconnect(iscsi, 1);
	if (iscsi_full_connect_sync(iscsi, u->portal, u->lun) != 0) {
		printf("LOGIN FAILED %s\n", iscsi_get_error(iscsi));
		fflush(stdout);
		iscsi_destroy_url(u);
		iscsi_destroy_context(iscsi);
		return 1;
	}
	*ctx = iscsi;
	*url = u;
	return 0;
}

#endif
