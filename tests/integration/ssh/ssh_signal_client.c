/* ssh_signal_client.c: a test client (libssh) for what OpenSSH's ssh cannot send — a "signal"
 * channel request. Usage: ssh_signal_client PORT KEYFILE SIGNAL COMMAND. Runs COMMAND, waits for
 * a line "ready" on its output, sends SIGNAL, prints the rest of the output and "exit=N". */
#include <libssh/libssh.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
        if (argc != 5) {
                fprintf(stderr, "usage: %s PORT KEYFILE SIGNAL COMMAND\n", argv[0]);
                return 2;
        }
        ssh_session s = ssh_new();
        unsigned port = (unsigned)atoi(argv[1]);
        long timeout = 20;
        ssh_key key = NULL;
        if (!s || ssh_options_set(s, SSH_OPTIONS_HOST, "127.0.0.1") < 0 ||
            ssh_options_set(s, SSH_OPTIONS_PORT, &port) < 0 ||
            ssh_options_set(s, SSH_OPTIONS_USER, "circleci") < 0 ||
            ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout) < 0 || ssh_connect(s) != SSH_OK ||
            ssh_pki_import_privkey_file(argv[2], NULL, NULL, NULL, &key) != SSH_OK ||
            ssh_userauth_publickey(s, NULL, key) != SSH_AUTH_SUCCESS) {
                fprintf(stderr, "connect/auth: %s\n", s ? ssh_get_error(s) : "oom");
                return 1;
        }
        ssh_channel ch = ssh_channel_new(s);
        if (!ch || ssh_channel_open_session(ch) != SSH_OK ||
            ssh_channel_request_exec(ch, argv[4]) != SSH_OK) {
                fprintf(stderr, "exec: %s\n", ssh_get_error(s));
                return 1;
        }
        char buf[4096], seen[8192] = "";
        size_t len = 0;
        bool sent = false;
        for (;;) {
                int n = ssh_channel_read_timeout(ch, buf, sizeof(buf), 0, 20000);
                if (n <= 0)
                        break;
                if (len + (size_t)n < sizeof(seen) - 1) {
                        memcpy(seen + len, buf, (size_t)n);
                        len += (size_t)n;
                        seen[len] = 0;
                }
                if (!sent && strstr(seen, "ready\n")) {
                        if (ssh_channel_request_send_signal(ch, argv[3]) != SSH_OK) {
                                fprintf(stderr, "signal: %s\n", ssh_get_error(s));
                                return 1;
                        }
                        sent = true;
                }
        }
        ssh_channel_send_eof(ch);
        printf("%sexit=%d\n", seen, ssh_channel_get_exit_status(ch));
        ssh_channel_free(ch);
        ssh_key_free(key);
        ssh_disconnect(s);
        ssh_free(s);
        return 0;
}
