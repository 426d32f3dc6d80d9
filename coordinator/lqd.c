/* lqd: the fleet daemon (docs/FLEET.md). A ZeroMQ REP socket takes one JSON request per message
 * (coordinator/fleet_proto.c), jobs live in a SQLite queue (fleet_queue.c), and each job is one
 * lq-calibrate run launched by local mpirun or by Slurm's sbatch.
 *
 * Everything runs in one thread: zmq_poll over the request socket and the ZAP socket wakes at
 * least every 200 ms, and each turn supervises the running jobs and launches queued ones. A
 * state change is committed to the queue before lqd acts on it, and a local job runs as
 * `sh -c '"$@"; write the exit status' …` in its own session, tagged in its environment with
 * LQ_FLEET_JOB=<state dir>#<job>.<launch>: after lqd is killed the job keeps running, its exit
 * status lands in a file, and the restarted lqd finds the process by its tag, so a job is
 * adopted rather than launched a second time. */
#include "lq_fleet.h"
#include "cli_args.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define TOOL "lqd"
/* bigger requests are refused with a reply; beyond this ZeroMQ drops the connection instead,
 * so a client cannot make lqd buffer arbitrary amounts */
#define MAX_WIRE_MESSAGE (1024 * 1024)
#define MAX_RUNNING 64
#define CANCEL_GRACE_S 5.0
#define SLURM_POLL_S 2.0

extern char **environ;

typedef struct {
    const char *listen, *state_dir, *launcher, *calibrate, *mpirun, *sbatch_script;
    const char *curve_secret, *curve_clients;
    long np, max_running;
} options;

typedef struct {
    int64_t id, launch;
    int slurm;                 /* 0: local process group, 1: Slurm job */
    pid_t pid;                 /* local: the group leader (the sh wrapper) */
    int own_child;             /* local: waitpid works (launched by this lqd, not adopted) */
    int reaped, wait_status;   /* own child: waitpid has returned, with this status */
    char slurm_id[64];
    double next_poll;          /* slurm: when to ask squeue again */
    int cancelling;            /* the job is already recorded as cancelled; wait for it to go */
    double kill_at;            /* cancelling: when SIGTERM turns into SIGKILL */
} running_job;

typedef struct {
    options o;
    char state_dir[PATH_MAX];
    lq_fleet_queue *queue;
    running_job running[MAX_RUNNING];
    int n_running;
    /* allowed client keys (CurveZMQ) */
    uint8_t (*client_keys)[32];
    int n_client_keys;
} daemon_state;

static volatile sig_atomic_t stop_requested, reload_requested;
static void on_signal(int sig) { stop_requested = sig; }
static void on_hangup(int sig) { (void)sig, reload_requested = 1; }

static void usage(FILE *out) {
    fprintf(out,
            "usage: " TOOL " --state-dir DIR [--listen ENDPOINT] [options]\n"
            "The fleet daemon: takes lq-calibrate jobs over ZeroMQ (lq-fleet submit|status|cancel),\n"
            "queues them in DIR/fleet.db, runs them with local mpirun or Slurm, and keeps every\n"
            "job's state across restarts (docs/FLEET.md).\n"
            "\n"
            "  --state-dir DIR       fleet.db, logs/ (one log per launch), exit/ (exit statuses)\n"
            "  --listen ENDPOINT     ZeroMQ endpoint (default " LQ_FLEET_DEFAULT_ENDPOINT "); anything but\n"
            "                        loopback or ipc:// needs --curve-secret and --curve-clients\n"
            "  --curve-secret FILE   the server's secret key (Z85, from lq-fleet keygen)\n"
            "  --curve-clients DIR   one public key file per allowed client (*.pub); others are refused\n"
            "  --launcher L          local (default: mpirun here) or slurm (sbatch)\n"
            "  --np N                MPI ranks per job (default 2)\n"
            "  --max-running K       jobs running at once (default 1)\n"
            "  --calibrate PATH      lq-calibrate (default: beside lqd's own executable)\n"
            "  --mpirun PATH         mpirun for --launcher local (default: mpirun from PATH)\n"
            "  --sbatch-script FILE  batch script for --launcher slurm (default %s);\n"
            "                        it gets lq-calibrate's flags as its arguments\n"
            "  --help                this text\n"
            "SIGTERM or SIGINT stop lqd; running jobs keep running and are adopted at restart.\n"
            "SIGHUP re-reads --curve-clients (a client added or removed without a restart).\n",
            LQ_DEFAULT_SBATCH_SCRIPT);
}

/* ---- small helpers ------------------------------------------------------------------------ */
static int make_dir(const char *path) { return mkdir(path, 0755) == 0 || errno == EEXIST; }

static void launch_paths(const daemon_state *d, int64_t id, int64_t launch, char *log, char *status,
                         size_t cap) {
    snprintf(log, cap, "%s/logs/job-%lld.%lld.log", d->state_dir, (long long)id, (long long)launch);
    snprintf(status, cap, "%s/exit/job-%lld.%lld.status", d->state_dir, (long long)id, (long long)launch);
}

static void job_tag(const daemon_state *d, int64_t id, int64_t launch, char *out, size_t cap) {
    snprintf(out, cap, "LQ_FLEET_JOB=%s#%lld.%lld", d->state_dir, (long long)id, (long long)launch);
}

/* The wrapper's exit status file: 1 and *code when present. */
static int read_exit_status(const char *path, int *code) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%d", code) == 1;
    fclose(f);
    return ok;
}

/* /proc/PID/stat: state letter and process group. 0 when the process does not exist. */
static int proc_stat(pid_t pid, char *state, pid_t *pgrp) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')');   /* the command name may hold spaces and parens */
    int pg = 0;
    if (!close_paren || sscanf(close_paren + 1, " %c %*d %d", state, &pg) != 2) return 0;
    *pgrp = (pid_t)pg;
    return 1;
}

/* Does the process carry this job tag in its environment (and is it still alive)? */
static int proc_has_tag(pid_t pid, const char *tag) {
    char state;
    pid_t pgrp;
    if (pid <= 0 || !proc_stat(pid, &state, &pgrp) || state == 'Z' || state == 'X') return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t tag_len = strlen(tag) + 1, cap = 1 << 20;
    char *env = malloc(cap);
    size_t n = env ? fread(env, 1, cap, f) : 0;
    fclose(f);
    int found = 0;
    for (size_t i = 0; i < n && !found; i += strlen(env + i) + 1) {
        if (i + tag_len <= n && !memcmp(env + i, tag, tag_len)) found = 1;
        if (!memchr(env + i, '\0', n - i)) break;
    }
    free(env);
    return found;
}

/* Every live process carrying the tag: the sh wrapper, mpirun, and the ranks (Open MPI puts
 * each rank in a process group of its own, so the wrapper's group does not cover them, but the
 * environment does). Up to max pids into pids (may be NULL); returns how many there are, and
 * *leader the wrapper (the one leading its own group first found) or 0. */
static int tagged_processes(const char *tag, pid_t *pids, int max, pid_t *leader) {
    DIR *dir = opendir("/proc");
    if (leader) *leader = 0;
    if (!dir) return 0;
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || !proc_has_tag((pid_t)pid, tag)) continue;
        if (pids && count < max) pids[count] = (pid_t)pid;
        count++;
        char state;
        pid_t pgrp;
        if (leader && !*leader && proc_stat((pid_t)pid, &state, &pgrp) && pgrp == pid) *leader = (pid_t)pid;
    }
    closedir(dir);
    return count;
}

/* Signals a local job's whole tree: its process group and everything carrying its tag. */
static void signal_job(const char *tag, pid_t group, int sig) {
    if (group > 0) kill(-group, sig);
    pid_t pids[256];
    int n = tagged_processes(tag, pids, 256, NULL);
    for (int i = 0; i < n && i < 256; i++) kill(pids[i], sig);
}

/* Runs a command (PATH lookup), its stdout+stderr captured into out (truncated to cap); returns
 * the exit code, or -1 when it could not run. */
static int run_capture(char *const argv[], char *out, size_t cap) {
    int pipefd[2];
    out[0] = '\0';
    if (pipe2(pipefd, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        snprintf(out, cap, "%s: %s", argv[0], strerror(rc));
        return -1;
    }
    size_t len = 0;
    for (;;) {
        char chunk[512];
        ssize_t got = read(pipefd[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        size_t take = (size_t)got < cap - 1 - len ? (size_t)got : cap - 1 - len;
        memcpy(out + len, chunk, take);
        len += take;
    }
    out[len] = '\0';
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r')) s[--n] = '\0';
}

/* ---- building a job's command line ---------------------------------------------------------- */
typedef struct {
    char **v;
    int n, cap;
} argv_list;

static int argv_push(argv_list *a, const char *s) {
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? 2 * a->cap : 32;
        char **grown = realloc(a->v, (size_t)cap * sizeof *grown);
        if (!grown) return 0;
        a->v = grown;
        a->cap = cap;
    }
    size_t len = strlen(s) + 1;
    if (!(a->v[a->n] = malloc(len))) return 0;
    memcpy(a->v[a->n], s, len);
    a->v[++a->n] = NULL;
    return 1;
}

static void argv_free(argv_list *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* lq-calibrate's flags for a job (everything after the program name). */
static lq_status calibrate_flags(const lq_job *j, argv_list *a) {
    const char *flag;
    char value[64];
    if (lq_fleet_budget_parse(j->budget, &flag, value, sizeof value))
        return lq_fail_context(LQ_ERR_FORMAT, "job %lld", (long long)j->id);
    int ok = argv_push(a, "--model") && argv_push(a, j->model);
    if (ok && j->tokenizer) ok = argv_push(a, "--tokenizer") && argv_push(a, j->tokenizer);
    ok = ok && argv_push(a, "--out") && argv_push(a, j->out) && argv_push(a, flag) &&
         argv_push(a, value) && argv_push(a, "--db") && argv_push(a, j->db);
    json_error_t jerr;
    json_t *args = json_loads(j->args_json ? j->args_json : "[]", 0, &jerr);
    size_t i;
    json_t *v;
    json_array_foreach(args, i, v) if (ok && json_is_string(v)) ok = argv_push(a, json_string_value(v));
    json_decref(args);
    return ok ? LQ_OK : lq_fail(LQ_ERR_NOMEM, "job %lld: out of memory", (long long)j->id);
}

/* ---- launching ------------------------------------------------------------------------------ */
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    char line[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    LQ_INFO(TOOL ": %s", line);
    fflush(stderr);
}

static void fail_job(daemon_state *d, int64_t id, int64_t code, const char *why) {
    if (lq_fleet_queue_finish(d->queue, id, LQ_JOB_FAILED, code, why))
        log_line("job %lld: cannot record the failure: %s", (long long)id, lq_last_error());
    else
        log_line("job %lld failed: %s", (long long)id, why);
}

static running_job *add_running(daemon_state *d, int64_t id, int64_t launch, int slurm) {
    if (d->n_running == MAX_RUNNING) return NULL;
    running_job *r = &d->running[d->n_running++];
    memset(r, 0, sizeof *r);
    r->id = id;
    r->launch = launch;
    r->slurm = slurm;
    return r;
}

static void launch_local(daemon_state *d, const lq_job *j, int64_t launch) {
    char log[PATH_MAX + 64], status_path[PATH_MAX + 64], tag[PATH_MAX + 64], why[PATH_MAX + 512];
    launch_paths(d, j->id, launch, log, status_path, sizeof log);
    job_tag(d, j->id, launch, tag, sizeof tag);
    argv_list a = {0};
    char np[32];
    snprintf(np, sizeof np, "%ld", d->o.np);
    /* $0 is the status file; it is written only after the job ends, whatever its status */
    int ok = argv_push(&a, "/bin/sh") && argv_push(&a, "-c") &&
             argv_push(&a, "\"$@\"; rc=$?; echo $rc > \"$0.tmp\" && mv -f \"$0.tmp\" \"$0\"; exit $rc") &&
             argv_push(&a, status_path) && argv_push(&a, d->o.mpirun) && argv_push(&a, "--oversubscribe") &&
             argv_push(&a, "-n") && argv_push(&a, np) && argv_push(&a, d->o.calibrate);
    if (!ok || calibrate_flags(j, &a)) {
        argv_free(&a);
        /* calibrate_flags says why (a budget lqd cannot turn into a flag, or memory) */
        fail_job(d, j->id, -1, ok ? lq_last_error() : "out of memory building the command line");
        return;
    }
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = calloc(n_env + 2, sizeof *envp);
    int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = -1;
    if (envp && logfd >= 0 && nullfd >= 0) {
        size_t k = 0;
        for (size_t i = 0; i < n_env; i++)
            if (strncmp(environ[i], "LQ_FLEET_JOB=", 13)) envp[k++] = environ[i];
        envp[k++] = tag;
        envp[k] = NULL;
        pid = fork();
        if (pid == 0) {
            /* only async-signal-safe calls here: lqd has ZeroMQ's threads */
            setsid();
            dup2(nullfd, 0);
            dup2(logfd, 1);
            dup2(logfd, 2);
            if (chdir(d->state_dir) != 0) _exit(126);
            execve(a.v[0], a.v, envp);
            _exit(127);
        }
    }
    int err = errno;
    if (logfd >= 0) close(logfd);
    if (nullfd >= 0) close(nullfd);
    free(envp);
    if (pid < 0) {
        snprintf(why, sizeof why, "cannot start the job (log %s): %s", log, strerror(err));
        argv_free(&a);
        fail_job(d, j->id, -1, why);
        return;
    }
    if (lq_fleet_queue_set_pid(d->queue, j->id, pid))
        log_line("job %lld: recording pid %d failed (%s); a restart finds it by its tag",
                 (long long)j->id, (int)pid, lq_last_error());
    running_job *r = add_running(d, j->id, launch, 0);
    r->pid = pid;
    r->own_child = 1;
    log_line("job %lld launched (launch %lld, pid %d, local mpirun -n %ld, log %s)", (long long)j->id,
             (long long)launch, (int)pid, d->o.np, log);
    argv_free(&a);
}

static void launch_slurm(daemon_state *d, const lq_job *j, int64_t launch) {
    char log[PATH_MAX + 64], status_path[PATH_MAX + 64], name[64], np[32], out[1024];
    launch_paths(d, j->id, launch, log, status_path, sizeof log);
    snprintf(name, sizeof name, "lqd-%lld-%lld", (long long)j->id, (long long)launch);
    snprintf(np, sizeof np, "%ld", d->o.np);
    char output_flag[PATH_MAX + 80];
    snprintf(output_flag, sizeof output_flag, "--output=%s", log);
    argv_list a = {0};
    int ok = argv_push(&a, "sbatch") && argv_push(&a, "--parsable") && argv_push(&a, "--job-name") &&
             argv_push(&a, name) && argv_push(&a, "--ntasks") && argv_push(&a, np) &&
             argv_push(&a, output_flag) && argv_push(&a, d->o.sbatch_script);
    if (!ok || calibrate_flags(j, &a)) {
        argv_free(&a);
        /* calibrate_flags says why (a budget lqd cannot turn into a flag, or memory) */
        fail_job(d, j->id, -1, ok ? lq_last_error() : "out of memory building the sbatch command line");
        return;
    }
    int rc = run_capture(a.v, out, sizeof out);
    argv_free(&a);
    trim(out);
    char id[64] = "";
    sscanf(out, "%63[0-9]", id);   /* --parsable: "ID" or "ID;cluster" */
    if (rc != 0 || !id[0]) {
        char why[1200];
        snprintf(why, sizeof why, "sbatch %s failed (status %d): %s", d->o.sbatch_script, rc, out);
        fail_job(d, j->id, -1, why);
        return;
    }
    if (lq_fleet_queue_set_slurm(d->queue, j->id, id))
        log_line("job %lld: recording Slurm job %s failed: %s", (long long)j->id, id, lq_last_error());
    running_job *r = add_running(d, j->id, launch, 1);
    snprintf(r->slurm_id, sizeof r->slurm_id, "%s", id);
    log_line("job %lld launched (launch %lld, slurm job %s, log %s)", (long long)j->id,
             (long long)launch, id, log);
}

static void launch_queued(daemon_state *d) {
    while (d->n_running < d->o.max_running && d->n_running < MAX_RUNNING && !stop_requested) {
        lq_job *jobs;
        size_t n;
        if (lq_fleet_queue_list(d->queue, LQ_JOB_QUEUED, &jobs, &n)) {
            log_line("listing queued jobs: %s", lq_last_error());
            return;
        }
        if (n == 0) {
            free(jobs);
            return;
        }
        int64_t launch;
        if (lq_fleet_queue_mark_launching(d->queue, jobs[0].id, &launch)) {
            log_line("job %lld: %s", (long long)jobs[0].id, lq_last_error());
            lq_jobs_free(jobs, n);
            return;
        }
        /* lq-calibrate writes OUT.tmp beside OUT and wants the parent to exist */
        char parent[LQ_FLEET_MAX_PATH + 80];
        snprintf(parent, sizeof parent, "%s", jobs[0].out);
        if (lq_make_dirs(dirname(parent)) != LQ_OK) {
            char why[sizeof parent + 160];
            snprintf(why, sizeof why, "cannot create the output's directory: %s", lq_last_error());
            fail_job(d, jobs[0].id, -1, why);
        } else if (!strcmp(d->o.launcher, "slurm")) launch_slurm(d, &jobs[0], launch);
        else launch_local(d, &jobs[0], launch);
        lq_jobs_free(jobs, n);
    }
}

/* ---- supervising ---------------------------------------------------------------------------- */
static void remove_running(daemon_state *d, int i) {
    d->running[i] = d->running[--d->n_running];
}

/* A local job's process is gone: its exit status decides. */
static void local_job_ended(daemon_state *d, running_job *r, int have_wait, int wait_status) {
    char log[PATH_MAX + 64], status_path[PATH_MAX + 64], why[PATH_MAX + 200];
    launch_paths(d, r->id, r->launch, log, status_path, sizeof log);
    if (r->cancelling) {
        log_line("job %lld: its cancelled process is gone", (long long)r->id);
        return;
    }
    int code;
    if (read_exit_status(status_path, &code)) {
        if (code == 0) {
            if (lq_fleet_queue_finish(d->queue, r->id, LQ_JOB_DONE, 0, NULL))
                log_line("job %lld: cannot record done: %s", (long long)r->id, lq_last_error());
            else
                log_line("job %lld done (launch %lld)", (long long)r->id, (long long)r->launch);
        } else {
            snprintf(why, sizeof why, "lq-calibrate exited with status %d; log %s", code, log);
            fail_job(d, r->id, code, why);
        }
    } else if (have_wait) {
        if (WIFSIGNALED(wait_status))
            snprintf(why, sizeof why, "the job was killed by signal %d before it finished; log %s",
                     WTERMSIG(wait_status), log);
        else
            snprintf(why, sizeof why, "the job ended (status %d) without writing its exit status; log %s",
                     WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1, log);
        fail_job(d, r->id, -1, why);
    } else {
        /* adopted and gone without a status: killed while nobody watched. lq-calibrate resumes
         * from its store, so running it again finishes the same output */
        if (lq_fleet_queue_requeue(d->queue, r->id, "its process vanished without an exit status"))
            log_line("job %lld: cannot requeue: %s", (long long)r->id, lq_last_error());
        else
            log_line("job %lld requeued: its process vanished without an exit status", (long long)r->id);
    }
}

/* "RUNNING", "COMPLETED", … from squeue, else sacct; "" when neither knows the job. */
static void slurm_state(const char *id, char *state, size_t cap) {
    char out[512];
    /* -t all: without it squeue hides finished jobs still in the controller's memory */
    char *squeue[] = {"squeue", "-h", "-t", "all", "-j", (char *)id, "-o", "%T", NULL};
    state[0] = '\0';
    if (run_capture(squeue, out, sizeof out) == 0) {
        trim(out);
        if (out[0]) {
            snprintf(state, cap, "%s", out);
            return;
        }
    }
    char *scontrol[] = {"scontrol", "show", "job", (char *)id, NULL};
    char shown[4096];
    const char *field;
    if (run_capture(scontrol, shown, sizeof shown) == 0 && (field = strstr(shown, "JobState=")) &&
        sscanf(field + 9, "%63[A-Z_]", out) == 1) {
        snprintf(state, cap, "%s", out);
        return;
    }
    char *sacct[] = {"sacct", "-n", "-X", "-j", (char *)id, "-o", "State", NULL};
    if (run_capture(sacct, out, sizeof out) == 0) {
        char word[64] = "";
        if (sscanf(out, " %63s", word) == 1) snprintf(state, cap, "%s", word);
    }
}

static void slurm_job_poll(daemon_state *d, int i) {
    running_job *r = &d->running[i];
    if (lq_seconds() < r->next_poll) return;
    r->next_poll = lq_seconds() + SLURM_POLL_S;
    char state[128], why[512];
    slurm_state(r->slurm_id, state, sizeof state);
    static const char *const active[] = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                         "SUSPENDED", "REQUEUED", "RESIZING", "STOPPED", NULL};
    for (const char *const *a = active; *a; a++)
        if (!strncmp(state, *a, strlen(*a))) return;
    if (r->cancelling) {
        log_line("job %lld: slurm job %s is gone (%s)", (long long)r->id, r->slurm_id, state);
    } else if (!strcmp(state, "COMPLETED")) {
        if (lq_fleet_queue_finish(d->queue, r->id, LQ_JOB_DONE, 0, NULL))
            log_line("job %lld: cannot record done: %s", (long long)r->id, lq_last_error());
        else
            log_line("job %lld done (slurm job %s)", (long long)r->id, r->slurm_id);
    } else {
        snprintf(why, sizeof why, "slurm job %s ended %s", r->slurm_id,
                 state[0] ? state : "without a record in squeue or sacct");
        fail_job(d, r->id, -1, why);
    }
    remove_running(d, i);
}

static void supervise(daemon_state *d) {
    for (int i = d->n_running - 1; i >= 0; i--) {
        running_job *r = &d->running[i];
        if (r->slurm) {
            slurm_job_poll(d, i);
            continue;
        }
        char tag[PATH_MAX + 64];
        job_tag(d, r->id, r->launch, tag, sizeof tag);
        if (r->cancelling && lq_seconds() > r->kill_at) {
            signal_job(tag, r->pid, SIGKILL);
            r->kill_at = lq_seconds() + 1;
        }
        if (r->own_child && !r->reaped) {
            int status = 0;
            pid_t w = waitpid(r->pid, &status, WNOHANG);
            r->reaped = w == r->pid || (w < 0 && errno == ECHILD);
            r->wait_status = status;
        }
        /* over when nothing carrying its tag is left: a wrapper killed on its own leaves mpirun
         * and the ranks running, and they may still write the output */
        int gone = (!r->own_child || r->reaped) && tagged_processes(tag, NULL, 0, NULL) == 0;
        if (gone) {
            local_job_ended(d, r, r->own_child && r->reaped, r->wait_status);
            remove_running(d, i);
        }
    }
}

/* At start: every job the queue says is running is adopted, finished from its status file, or
 * requeued; a cancelled job whose process outlived a crash is stopped. */
static void recover(daemon_state *d) {
    lq_job *jobs;
    size_t n;
    if (lq_fleet_queue_list(d->queue, -1, &jobs, &n)) {
        log_line("recovery: %s", lq_last_error());
        return;
    }
    for (size_t k = 0; k < n; k++) {
        lq_job *j = &jobs[k];
        char tag[PATH_MAX + 64];
        job_tag(d, j->id, j->launches, tag, sizeof tag);
        if (j->state == LQ_JOB_CANCELLED && j->launches > 0 && tagged_processes(tag, NULL, 0, NULL) > 0) {
            signal_job(tag, 0, SIGKILL);
            log_line("job %lld: stopped the processes of a cancelled job", (long long)j->id);
        }
        if (j->state == LQ_JOB_CANCELLED && j->slurm_id) {
            char *scancel[] = {"scancel", j->slurm_id, NULL};
            char out[256];
            run_capture(scancel, out, sizeof out);
        }
        if (j->state != LQ_JOB_RUNNING) continue;
        if (j->slurm_id) {
            running_job *r = add_running(d, j->id, j->launches, 1);
            if (r) snprintf(r->slurm_id, sizeof r->slurm_id, "%s", j->slurm_id);
            lq_fleet_queue_event(d->queue, j->id, "adopt", j->slurm_id);
            log_line("job %lld adopted (slurm job %s)", (long long)j->id, j->slurm_id);
            continue;
        }
        if (!strcmp(j->launcher, "slurm") && !strcmp(d->o.launcher, "slurm")) {
            /* killed between sbatch and recording its id: the job name finds it */
            char name[64], out[256], *squeue[] = {"squeue", "-h", "-t", "all", "-n", name, "-o", "%i", NULL};
            snprintf(name, sizeof name, "lqd-%lld-%lld", (long long)j->id, (long long)j->launches);
            if (run_capture(squeue, out, sizeof out) == 0 && (trim(out), out[0] >= '0' && out[0] <= '9')) {
                running_job *r = add_running(d, j->id, j->launches, 1);
                if (r) snprintf(r->slurm_id, sizeof r->slurm_id, "%.63s", out);
                lq_fleet_queue_set_slurm(d->queue, j->id, out);
                lq_fleet_queue_event(d->queue, j->id, "adopt", out);
                log_line("job %lld adopted (slurm job %s, found by name %s)", (long long)j->id, out, name);
                continue;
            }
        }
        pid_t leader;
        int alive = tagged_processes(tag, NULL, 0, &leader);
        pid_t pid = leader ? leader : (pid_t)j->pid;
        if (alive > 0) {
            running_job *r = add_running(d, j->id, j->launches, 0);
            if (r) r->pid = pid;
            if (pid > 0 && pid != j->pid) lq_fleet_queue_set_pid(d->queue, j->id, pid);
            char detail[64];
            snprintf(detail, sizeof detail, "pid %d", (int)pid);
            lq_fleet_queue_event(d->queue, j->id, "adopt", detail);
            log_line("job %lld adopted (launch %lld, %d process(es) still running, wrapper pid %d)",
                     (long long)j->id, (long long)j->launches, alive, (int)leader);
            continue;
        }
        running_job gone = {.id = j->id, .launch = j->launches};
        local_job_ended(d, &gone, 0, 0);
    }
    lq_jobs_free(jobs, n);
}

/* ---- requests ------------------------------------------------------------------------------ */
static char *ok_reply(json_t *fields) {
    json_object_set_new(fields, "ok", json_true());
    char *text = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    return text ? text : lq_fleet_error_reply("lqd: out of memory");
}

static json_t *job_object(const lq_job *j) {
    char *text;
    if (lq_job_json(j, &text)) return json_null();
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    free(text);
    return o ? o : json_null();
}

static char *handle_submit(daemon_state *d, const lq_fleet_request *req) {
    int n = req->n_budgets;
    json_t *list = json_array();
    char (*outs)[LQ_FLEET_MAX_PATH + 80] = calloc((size_t)n, sizeof *outs);
    char (*dbs)[LQ_FLEET_MAX_PATH + 80] = calloc((size_t)n, sizeof *dbs);
    char (*prints)[17] = calloc((size_t)n, sizeof *prints);
    char *reply = NULL;
    json_t *args = json_array();
    for (int i = 0; args && i < req->n_args; i++) json_array_append_new(args, json_string(req->args[i]));
    char *args_json = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!list || !outs || !dbs || !prints || !args_json) {
        reply = lq_fleet_error_reply("lqd: out of memory");
        goto done;
    }
    /* every job is checked before any is queued, so a bad request queues nothing */
    for (int i = 0; i < n; i++) {
        if (req->out_is_parent) snprintf(outs[i], sizeof outs[i], "%s/%s", req->out, req->budgets[i]);
        else snprintf(outs[i], sizeof outs[i], "%s", req->out);
        if (req->db) snprintf(dbs[i], sizeof dbs[i], "%s", req->db);
        else {
            /* lq-calibrate's own default, written out so the queue records it */
            char parent[sizeof outs[i]];
            snprintf(parent, sizeof parent, "%s", outs[i]);
            snprintf(dbs[i], sizeof dbs[i], "%s/liftquant-store/store.db", dirname(parent));
        }
        if (lq_fleet_fingerprint(req->model, req->tokenizer, req->budgets[i],
                                 (const char *const *)req->args, req->n_args, prints[i])) {
            char why[1024];
            snprintf(why, sizeof why, "submit: %s", lq_last_error());
            reply = lq_fleet_error_reply(why);
            goto done;
        }
    }
    for (int i = 0; i < n; i++) {
        json_t *entry = json_object();
        json_object_set_new(entry, "budget", json_string(req->budgets[i]));
        json_object_set_new(entry, "out", json_string(outs[i]));
        json_array_append_new(list, entry);
        if (req->if_changed) {
            lq_job last;
            int found = 0;
            if (lq_fleet_queue_last_done(d->queue, outs[i], &last, &found) == LQ_OK && found) {
                int same = !strcmp(last.fingerprint, prints[i]);
                int64_t last_id = last.id;
                lq_job_free(&last);
                if (same) {
                    json_object_set_new(entry, "skipped", json_true());
                    json_object_set_new(entry, "done_job", json_integer(last_id));
                    log_line("submit %s at %s: unchanged since job %lld, skipped", req->model,
                             req->budgets[i], (long long)last_id);
                    continue;
                }
            }
            /* the same work already waiting or running is not queued twice either */
            lq_job *pending;
            size_t np = 0;
            int64_t pending_id = 0;
            if (lq_fleet_queue_list(d->queue, -1, &pending, &np) == LQ_OK) {
                for (size_t k = 0; k < np; k++)
                    if ((pending[k].state == LQ_JOB_QUEUED || pending[k].state == LQ_JOB_RUNNING) &&
                        !strcmp(pending[k].out, outs[i]) && !strcmp(pending[k].fingerprint, prints[i]))
                        pending_id = pending[k].id;
                lq_jobs_free(pending, np);
            }
            if (pending_id) {
                json_object_set_new(entry, "skipped", json_true());
                json_object_set_new(entry, "pending_job", json_integer(pending_id));
                continue;
            }
        }
        lq_job j = {.model = req->model, .tokenizer = req->tokenizer, .budget = req->budgets[i],
                    .out = outs[i], .db = dbs[i], .args_json = args_json,
                    .fingerprint = prints[i], .launcher = (char *)d->o.launcher};
        int64_t id;
        if (lq_fleet_queue_add(d->queue, &j, &id)) {
            char why[1024];
            snprintf(why, sizeof why, "submit: %s", lq_last_error());
            json_decref(list);
            list = NULL;
            reply = lq_fleet_error_reply(why);
            goto done;
        }
        json_object_set_new(entry, "id", json_integer(id));
        json_object_set_new(entry, "state", json_string("queued"));
        log_line("job %lld queued: %s at %s -> %s", (long long)id, req->model, req->budgets[i], outs[i]);
    }
    reply = ok_reply(json_pack("{s:o}", "jobs", list));
    list = NULL;
done:
    json_decref(list);
    free(outs);
    free(dbs);
    free(prints);
    free(args_json);
    return reply;
}

static char *handle_status(daemon_state *d, const lq_fleet_request *req) {
    json_t *list = json_array();
    if (req->job > 0) {
        lq_job j;
        if (lq_fleet_queue_get(d->queue, req->job, &j)) {
            json_decref(list);
            return lq_fleet_error_reply(lq_last_error());
        }
        json_array_append_new(list, job_object(&j));
        lq_job_free(&j);
    } else {
        lq_job *jobs;
        size_t n;
        if (lq_fleet_queue_list(d->queue, -1, &jobs, &n)) {
            json_decref(list);
            return lq_fleet_error_reply(lq_last_error());
        }
        for (size_t i = 0; i < n; i++) json_array_append_new(list, job_object(&jobs[i]));
        lq_jobs_free(jobs, n);
    }
    return ok_reply(json_pack("{s:o}", "jobs", list));
}

static char *handle_cancel(daemon_state *d, const lq_fleet_request *req) {
    lq_job j;
    if (lq_fleet_queue_get(d->queue, req->job, &j)) return lq_fleet_error_reply(lq_last_error());
    char why[256];
    if (j.state != LQ_JOB_QUEUED && j.state != LQ_JOB_RUNNING) {
        snprintf(why, sizeof why, "cancel: job %lld is already %s", (long long)j.id, lq_job_state_name(j.state));
        lq_job_free(&j);
        return lq_fleet_error_reply(why);
    }
    lq_job_state was = j.state;
    lq_job_free(&j);
    /* recorded first: a crash right after must not let the restart requeue the job */
    if (lq_fleet_queue_finish(d->queue, req->job, LQ_JOB_CANCELLED, -1, "cancelled by request"))
        return lq_fleet_error_reply(lq_last_error());
    for (int i = 0; was == LQ_JOB_RUNNING && i < d->n_running; i++) {
        running_job *r = &d->running[i];
        if (r->id != req->job) continue;
        r->cancelling = 1;
        if (r->slurm) {
            char *scancel[] = {"scancel", r->slurm_id, NULL};
            char out[256];
            if (run_capture(scancel, out, sizeof out) != 0)
                log_line("job %lld: scancel %s: %s", (long long)r->id, r->slurm_id, out);
            r->next_poll = 0;
        } else {
            char tag[PATH_MAX + 64];
            job_tag(d, r->id, r->launch, tag, sizeof tag);
            signal_job(tag, r->pid, SIGTERM);
            r->kill_at = lq_seconds() + CANCEL_GRACE_S;
        }
    }
    log_line("job %lld cancelled (was %s)", (long long)req->job, lq_job_state_name(was));
    lq_job now;
    if (lq_fleet_queue_get(d->queue, req->job, &now)) return lq_fleet_error_reply(lq_last_error());
    char *reply = ok_reply(json_pack("{s:o}", "job", job_object(&now)));
    lq_job_free(&now);
    return reply;
}

/* One request from the REP socket: every frame is read (a multipart message is refused whole),
 * and exactly one reply is sent, as REP requires. */
static void serve_request(daemon_state *d, void *sock) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return;
    }
    int frames = 1;
    while (zmq_msg_more(&msg)) {
        zmq_msg_close(&msg);
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) < 0) break;
        frames++;
    }
    char *reply;
    char why[160];
    if (frames > 1) {
        snprintf(why, sizeof why, "request: a multipart message (%d frames); send one JSON object "
                 "in one frame", frames);
        reply = lq_fleet_error_reply(why);
    } else {
        lq_fleet_request req;
        if (lq_fleet_request_parse(zmq_msg_data(&msg), zmq_msg_size(&msg), &req)) {
            reply = lq_fleet_error_reply(lq_last_error());
        } else {
            reply = req.op == LQ_FLEET_SUBMIT   ? handle_submit(d, &req)
                    : req.op == LQ_FLEET_CANCEL ? handle_cancel(d, &req)
                                                : handle_status(d, &req);
            lq_fleet_request_free(&req);
        }
    }
    zmq_msg_close(&msg);
    if (zmq_send(sock, reply, strlen(reply), 0) < 0)
        log_line("sending a reply: %s", zmq_strerror(zmq_errno()));
    free(reply);
}

/* The ZAP handler (RFC 27): CURVE clients whose public key is in --curve-clients get 200,
 * everyone else 400. */
static void serve_zap(daemon_state *d, void *zap) {
    zmq_msg_t parts[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 8) parts[n++] = m;
        else zmq_msg_close(&m);
    }
    if (n < 2) {
        for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
        return;
    }
    int allowed = 0;
    const char *reason = "unknown client key";
    if (n >= 7 && zmq_msg_size(&parts[5]) == 5 && !memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) &&
        zmq_msg_size(&parts[6]) == 32) {
        for (int k = 0; k < d->n_client_keys && !allowed; k++)
            allowed = !memcmp(d->client_keys[k], zmq_msg_data(&parts[6]), 32);
    } else {
        reason = "not a CURVE client";
    }
    char key_text[41] = "?";
    if (n >= 7 && zmq_msg_size(&parts[6]) == 32) zmq_z85_encode(key_text, zmq_msg_data(&parts[6]), 32);
    char address[64] = "?";
    if (n >= 4) snprintf(address, sizeof address, "%.*s", (int)(zmq_msg_size(&parts[3]) < 63 ? zmq_msg_size(&parts[3]) : 63),
                         (const char *)zmq_msg_data(&parts[3]));
    if (!allowed) log_line("refused a connection from %s: %s %s", address, reason, key_text);
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(zap, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), ZMQ_SNDMORE);
    zmq_send(zap, allowed ? "200" : "400", 3, ZMQ_SNDMORE);
    const char *text = allowed ? "OK" : reason;
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, allowed ? key_text : "", allowed ? 40 : 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
    for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

/* Every *.pub in dir_path into a new array; on failure *keys_out is untouched. */
static lq_status load_client_keys(const char *dir_path, uint8_t (**keys_out)[32], int *n_out) {
    DIR *dir = opendir(dir_path);
    if (!dir) return lq_fail(LQ_ERR_IO, "--curve-clients %s: %s", dir_path, strerror(errno));
    uint8_t (*keys)[32] = NULL;
    int n = 0;
    lq_status st = LQ_OK;
    for (struct dirent *e; !st && (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".pub")) continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        uint8_t (*grown)[32] = realloc(keys, (size_t)(n + 1) * sizeof *grown);
        if (!grown) {
            st = lq_fail(LQ_ERR_NOMEM, "--curve-clients: out of memory");
            break;
        }
        keys = grown;
        st = lq_fleet_key_load(path, keys[n]);
        if (!st) n++;
    }
    closedir(dir);
    if (!st && n == 0)
        st = lq_fail(LQ_ERR_NOT_FOUND, "--curve-clients %s: no client key files (*.pub) in it", dir_path);
    if (st) {
        free(keys);
        return st;
    }
    *keys_out = keys;
    *n_out = n;
    return LQ_OK;
}

/* SIGHUP: the new list replaces the old only when it loads whole, so a half-edited key
 * directory never locks every client out of a running daemon. */
static void reload_client_keys(daemon_state *d) {
    uint8_t (*keys)[32];
    int n;
    if (load_client_keys(d->o.curve_clients, &keys, &n)) {
        log_line("SIGHUP: %s; keeping the %d client key(s) loaded before", lq_last_error(), d->n_client_keys);
        return;
    }
    free(d->client_keys);
    d->client_keys = keys;
    d->n_client_keys = n;
    log_line("SIGHUP: %d client key(s) loaded from %s", n, d->o.curve_clients);
}

/* ---- main ---------------------------------------------------------------------------------- */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.listen = LQ_FLEET_DEFAULT_ENDPOINT, .launcher = "local", .mpirun = "mpirun",
                   .sbatch_script = LQ_DEFAULT_SBATCH_SCRIPT, .np = 2, .max_running = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--listen")) ok = lq_arg_string(TOOL, a, v, &o->listen), i++;
        else if (!strcmp(a, "--state-dir")) ok = lq_arg_string(TOOL, a, v, &o->state_dir), i++;
        else if (!strcmp(a, "--launcher")) ok = lq_arg_string(TOOL, a, v, &o->launcher), i++;
        else if (!strcmp(a, "--calibrate")) ok = lq_arg_string(TOOL, a, v, &o->calibrate), i++;
        else if (!strcmp(a, "--mpirun")) ok = lq_arg_string(TOOL, a, v, &o->mpirun), i++;
        else if (!strcmp(a, "--sbatch-script")) ok = lq_arg_string(TOOL, a, v, &o->sbatch_script), i++;
        else if (!strcmp(a, "--curve-secret")) ok = lq_arg_string(TOOL, a, v, &o->curve_secret), i++;
        else if (!strcmp(a, "--curve-clients")) ok = lq_arg_string(TOOL, a, v, &o->curve_clients), i++;
        else if (!strcmp(a, "--np")) ok = lq_arg_long(TOOL, a, v, 1, 4096, &o->np), i++;
        else if (!strcmp(a, "--max-running")) ok = lq_arg_long(TOOL, a, v, 1, MAX_RUNNING, &o->max_running), i++;
        else {
            fprintf(stderr, TOOL ": unknown argument '%s' (see --help)\n", a);
            return 0;
        }
        if (!ok) return 0;
    }
    if (!o->state_dir) {
        fprintf(stderr, TOOL ": --state-dir is required (see --help)\n");
        return 0;
    }
    if (strcmp(o->launcher, "local") && strcmp(o->launcher, "slurm")) {
        fprintf(stderr, TOOL ": --launcher %s: expected local or slurm\n", o->launcher);
        return 0;
    }
    if (!o->curve_secret != !o->curve_clients) {
        fprintf(stderr, TOOL ": --curve-secret and --curve-clients go together\n");
        return 0;
    }
    if (!o->curve_secret && !lq_endpoint_is_local(o->listen)) {
        fprintf(stderr, TOOL ": --listen %s is not a loopback endpoint: a remote endpoint needs "
                "CurveZMQ, --curve-secret FILE and --curve-clients DIR (keys from lq-fleet keygen)\n",
                o->listen);
        return 0;
    }
    return 1;
}

static char calibrate_default[PATH_MAX + 32];

int main(int argc, char **argv) {
    daemon_state d = {0};
    if (!parse_options(argc, argv, &d.o)) return 2;
    if (!d.o.calibrate) {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
            fprintf(stderr, TOOL ": cannot find my own executable to locate lq-calibrate; pass --calibrate\n");
            return 1;
        }
        self[n] = '\0';
        snprintf(calibrate_default, sizeof calibrate_default, "%s/lq-calibrate", dirname(self));
        d.o.calibrate = calibrate_default;
    }
    if (!strcmp(d.o.launcher, "local") && access(d.o.calibrate, X_OK) != 0) {
        fprintf(stderr, TOOL ": --calibrate %s: %s\n", d.o.calibrate, strerror(errno));
        return 1;
    }
    if (!strcmp(d.o.launcher, "slurm") && access(d.o.sbatch_script, R_OK) != 0) {
        fprintf(stderr, TOOL ": --sbatch-script %s: %s\n", d.o.sbatch_script, strerror(errno));
        return 1;
    }
    /* cluster/lq-calibrate.sbatch runs $LQ_CALIBRATE, and sbatch passes our environment on;
     * set before ZeroMQ starts its threads */
    if (!strcmp(d.o.launcher, "slurm") && setenv("LQ_CALIBRATE", d.o.calibrate, 1) != 0) {
        fprintf(stderr, TOOL ": setting LQ_CALIBRATE: %s\n", strerror(errno));
        return 1;
    }
    if (!make_dir(d.o.state_dir) || !realpath(d.o.state_dir, d.state_dir)) {
        fprintf(stderr, TOOL ": --state-dir %s: %s\n", d.o.state_dir, strerror(errno));
        return 1;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/logs", d.state_dir);
    int dirs_ok = make_dir(path);
    snprintf(path, sizeof path, "%s/exit", d.state_dir);
    dirs_ok = dirs_ok && make_dir(path);
    if (!dirs_ok) {
        fprintf(stderr, TOOL ": %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* two daemons on one queue would launch its jobs twice */
    snprintf(path, sizeof path, "%s/lqd.lock", d.state_dir);
    int lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, TOOL ": %s: %s\n", path,
                lock_fd < 0 ? strerror(errno) : "another lqd is running on this state directory");
        return 1;
    }

    uint8_t secret[32];
    if (d.o.curve_secret && (lq_fleet_key_load(d.o.curve_secret, secret) ||
                             load_client_keys(d.o.curve_clients, &d.client_keys, &d.n_client_keys))) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        free(d.client_keys);
        return 1;
    }
    snprintf(path, sizeof path, "%s/fleet.db", d.state_dir);
    if (lq_fleet_queue_open(path, &d.queue)) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        free(d.client_keys);
        return 1;
    }

    void *ctx = zmq_ctx_new();
    void *zap = NULL, *sock = NULL;
    int rc = 1;
    if (d.o.curve_secret) {
        /* bound before the server socket, so no handshake can arrive without a handler */
        zap = zmq_socket(ctx, ZMQ_REP);
        if (!zap || zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
            fprintf(stderr, TOOL ": ZAP handler: %s\n", zmq_strerror(zmq_errno()));
            goto out;
        }
    }
    sock = zmq_socket(ctx, ZMQ_REP);
    int linger = 0, one = 1;
    int64_t max_size = MAX_WIRE_MESSAGE;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size);
    if (d.o.curve_secret) {
        zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 32);
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "lqd", 3);
    }
    if (zmq_bind(sock, d.o.listen) != 0) {
        fprintf(stderr, TOOL ": --listen %s: %s\n", d.o.listen, zmq_strerror(zmq_errno()));
        goto out;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction hup = {0};
    hup.sa_handler = on_hangup;
    sigaction(SIGHUP, &hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_line("listening on %s (%s), state %s, launcher %s, max running %ld", d.o.listen,
             d.o.curve_secret ? "CurveZMQ" : "no authentication, loopback only", d.state_dir,
             d.o.launcher, d.o.max_running);
    recover(&d);
    while (!stop_requested) {
        zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0}, {zap, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, zap ? 2 : 1, 200);
        if (n < 0 && zmq_errno() != EINTR) {
            log_line("poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (reload_requested) {
            reload_requested = 0;
            if (zap) reload_client_keys(&d);
            else log_line("SIGHUP: no --curve-clients to re-read (no authentication on %s)", d.o.listen);
        }
        if (n > 0 && zap && (items[1].revents & ZMQ_POLLIN)) serve_zap(&d, zap);
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) serve_request(&d, sock);
        supervise(&d);
        launch_queued(&d);
    }
    log_line("stopping on signal %d; %d running job(s) keep running and are adopted at restart",
             (int)stop_requested, d.n_running);
    rc = 0;
out:
    if (sock) zmq_close(sock);
    if (zap) {
        zmq_setsockopt(zap, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(zap);
    }
    zmq_ctx_term(ctx);
    lq_fleet_queue_close(d.queue);
    free(d.client_keys);
    close(lock_fd);
    return rc;
}
