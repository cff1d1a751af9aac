/* commands.h: the subcommands of the one `drover` binary; each lives in its module. */
#pragma once

int cmd_run(int argc, char **argv); /* executor/cmd_run.c: drover run */
/* executor/cmd_job.c: drover job --spec FILE [--events-fd N]: the per-job supervisor. Runs one job
 * spec; job events as JSON lines on fd N. Exit: 0 success, 1 job failed, 2 bad usage or spec,
 * 3 infrastructure failure, 4 canceled (SIGTERM/SIGINT kills the whole job tree first). */
int cmd_job(int argc, char **argv);
int cmd_config(int argc,
               char **argv); /* executor/config/cmd_config.c: drover config validate|process */
int cmd_orb(int argc, char **argv);      /* executor/config/cmd_orb.c: drover orb pull|ls|source */
int cmd_sandbox(int argc, char **argv);  /* sandbox/cli.c: drover sandbox -- CMD */
int cmd_agent(int argc, char **argv);    /* agent/agent.c: drover agent (the daemon) */
int cmd_check(int argc, char **argv);    /* agent/check.c: drover check (preflight) */
int cmd_circleci(int argc, char **argv); /* executor/circleci_tool.c: `circleci` inside a job */
int cmd_image(int argc, char **argv);    /* executor/images/cmd_image.c: drover image pull|ls|gc */
/* executor/docker/runtime_docker_pump.c: drover __docker-pump KIND, the docker runtime's pump
 * process (internal: not in the help; refused without the fds the runtime gives it). */
int cmd_docker_pump(int argc, char **argv);
/* executor/docker/docker_proxy.c: drover __docker-proxy, setup_remote_docker's Docker API proxy
 * (internal: refused without the fds the supervisor gives it). */
int cmd_docker_proxy(int argc, char **argv);
