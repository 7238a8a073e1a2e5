/*
 * The pod's pause process, compiled: PID 1 of the pod's PID namespace (same contract as pause.py, which stays as
 * the fallback when this binary is not built).
 *
 * It holds the pod's NET, IPC, UTS and PID namespaces, reaps every child re-parented to it and records the exit
 * status of the processes nsexec registered: a process writes its in-namespace PID's record name to
 * <pod_dir>/pids/<nspid> before it execs; when pause reaps that PID it writes <pod_dir>/exits/<record> atomically
 * as "<exit code> <signal> <finished unix ns>\n" and removes the pids file. SIGTERM or SIGINT end it with status 0.
 *
 * Why C: a forked Python pause dirties about 1.1 MB of its own; this one costs about a tenth of that per pod.
 * Usage: pause POD_DIR READY_FD   (writes "1" to READY_FD once it waits for signals, then closes it)
 * Built by scripts/_setup.sh: cc -O2 -static -o .venv/libexec/minikubelet/pause minikubelet/nsexec/pause.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *pod_dir;

static void record_exit(pid_t pid, int status) {
    char marker[4096], record[256], tmp[4096], dst[4096], line[96];
    int n = snprintf(marker, sizeof marker, "%s/pids/%d", pod_dir, (int)pid);
    if (n < 0 || n >= (int)sizeof marker) return;
    int fd = open(marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return; /* an unregistered orphan: reaped, nothing to record */
    ssize_t len = read(fd, record, sizeof record - 1);
    close(fd);
    if (len <= 0) return;
    record[len] = '\0';
    while (len > 0 && strchr(" \t\r\n", record[len - 1]) != NULL) record[--len] = '\0';
    if (len == 0 || strchr(record, '/') != NULL) return;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = sig ? 128 + sig : WEXITSTATUS(status);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int t = snprintf(tmp, sizeof tmp, "%s/exits/.%s.tmp", pod_dir, record);
    int d = snprintf(dst, sizeof dst, "%s/exits/%s", pod_dir, record);
    if (t < 0 || t >= (int)sizeof tmp || d < 0 || d >= (int)sizeof dst) return;
    n = snprintf(line, sizeof line, "%d %d %lld\n", code, sig,
                 (long long)now.tv_sec * 1000000000LL + (long long)now.tv_nsec);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t written = write(fd, line, (size_t)n);
    close(fd);
    if (written != n || rename(tmp, dst) != 0) {
        unlink(tmp);
        return;
    }
    unlink(marker);
}

static void reap_all(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return; /* 0: children left, none exited; -1 ECHILD: no children */
        record_exit(pid, status);
    }
}

static void close_from(unsigned int first, unsigned int last) {
    if (first > last) return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
    for (unsigned int fd = first; fd <= last && fd < 4096; fd++) close((int)fd);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pause POD_DIR READY_FD\n");
        return 2;
    }
    pod_dir = argv[1];
    int ready = atoi(argv[2]);
    if (ready < 3) {
        fprintf(stderr, "pause: READY_FD must be 3 or more\n");
        return 2;
    }
    /* Signals are blocked and taken with sigwaitinfo: nothing is lost between a wake-up and the next wait, and the
       kernel does not drop them for lack of a handler (the PID 1 rule). */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGINT);
    sigprocmask(SIG_BLOCK, &waited, NULL);
    const int ignored[] = {SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2, SIGQUIT};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) signal(ignored[i], SIG_IGN);
    prctl(PR_SET_NAME, "pause", 0, 0, 0);
    setsid();
    if (chdir("/") != 0) return 1;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    close_from(3, (unsigned int)ready - 1);
    close_from((unsigned int)ready + 1, ~0U);
    if (write(ready, "1", 1) != 1) return 1;
    close(ready);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&waited, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) _exit(0);
        reap_all();
    }
}
