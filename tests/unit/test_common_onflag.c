/*
 * test_common_onflag.c - src/common/onflag.c with real children.
 *
 * The hook runs a shell script written into a temporary directory that records
 * what the kernel handed it - its argv, /proc/PID/environ (the environment as
 * execve gave it, before the shell adds anything), its standard descriptors, its
 * process group, signal mask and ignored signals, and whether a descriptor the
 * test left open leaked in - into a file the test then compares with values it
 * writes out by hand. A hostile file name must stay one literal string (nothing
 * runs), control characters become '?', and values are capped. Also: the timeout
 * kills the whole process group (the test is a child subreaper, so the script's
 * orphaned `sleep 60` comes back to it and its SIGKILL is seen), max_running skips,
 * a missing program and a failing one are logged, and argv[0] must be absolute.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_files.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "onflag.h"

#define LEAK_FD 77 /* open without O_CLOEXEC in the test: must not reach the hook */

static char dir[64], dump_sh[128], sleep_sh[128], fail_sh[128], err[256];

/* ------------------------------------------------------------------------ */
/* Helpers.                                                                 */

static void write_script(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0700), 0);
}

/* Wait up to 10 s for `path` to exist. */
static void wait_file(const char *path)
{
    for (int i = 0; i < 1000 && access(path, F_OK) != 0; i++)
        poll(NULL, 0, 10);
    assert_int_equal(access(path, F_OK), 0);
}

/* Wait up to 10 s for the hook's reapers. */
static void wait_idle(cm_onflag *h)
{
    for (int i = 0; i < 1000 && cm_onflag_running(h) > 0; i++)
        poll(NULL, 0, 10);
    assert_int_equal(cm_onflag_running(h), 0);
}

/* The status of `pid`, a hook's grandchild: it becomes ours (we are a subreaper) once
 * its parent dies. Waits up to 10 s. */
static int reap_orphan(pid_t pid)
{
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        poll(NULL, 0, 10); /* ECHILD: not reparented yet; 0: still alive */
    }
    fail_msg("process %ld did not end", (long)pid);
    return 0;
}

static int saved_stderr = -1;
static char capture_path[128];

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", dir);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(2);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    assert_int_equal(dup2(saved_stderr, 2), 2);
    close(saved_stderr);
    return slurp(capture_path);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

/* The line of `text` starting with `prefix`, without it (static; "" if absent). */
static const char *line_value(const char *text, const char *prefix)
{
    static char out[4096];
    size_t n = strlen(prefix);
    out[0] = '\0';
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, prefix, n)) {
            size_t len = strcspn(l + n, "\n");
            snprintf(out, sizeof out, "%.*s", (int)len, l + n);
            break;
        }
    }
    return out;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The lines between "env-begin" and "env-end", sorted, joined with '\n'. */
static char *env_block(const char *text)
{
    const char *b = strstr(text, "env-begin\n"), *e = strstr(text, "env-end\n");
    char *lines[64], *copy, *save = NULL, *out;
    size_t n = 0;
    assert_true(b && e && e > b);
    b += strlen("env-begin\n");
    copy = strndup(b, (size_t)(e - b));
    for (char *l = strtok_r(copy, "\n", &save); l && n < 64; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof lines[0], by_string);
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++)
        fprintf(m, "%s\n", lines[i]);
    fclose(m);
    free(copy);
    return out;
}

/* ------------------------------------------------------------------------ */
/* The environment and argv, exactly.                                       */

static void env_and_argv_exact(void **state)
{
    char out[128], pwned[128], victim[128], hostile[320], want_file[400], name[512];
    snprintf(out, sizeof out, "%s/dump.txt", dir);
    snprintf(pwned, sizeof pwned, "%s/pwned", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    write_script(victim, "keep me\n");
    /* A shell would run the command substitution and the rm; execve must not. */
    snprintf(hostile, sizeof hostile, "$(touch %s); rm -rf %s `id` \"q\" 'x' ; | & *", pwned,
             victim);
    snprintf(name, sizeof name, "%s\n\r\t\x1b[31mred\x7f.png", hostile);
    snprintf(want_file, sizeof want_file, "CLIPMOD_FILENAME=%s???\?[31mred?.png", hostile);
    const char *argv[] = {dump_sh, out, hostile, "", "two words", NULL};
    cm_onflag *h = cm_onflag_new(argv, 10000, 0, err, sizeof err);
    assert_non_null(h);
    cm_onflag_event ev = {.verdict = "flagged",
                          .category = "weapons",
                          .action = "reject",
                          .filename = name,
                          .source = "clipmodd:http",
                          .policy = "0123456789abcdef",
                          .reason = NULL,
                          .score = 0.81236,
                          .threshold = 0.5,
                          .flagged_by = "image+context",
                          .context_score = 0.72734,
                          .generation = 7};
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    assert_int_equal(cm_onflag_free(h, 10000), 0);
    wait_file(out);
    char *dump = slurp(out), *env = env_block(dump);

    const char *want_env[] = {"PATH=/usr/bin:/bin",
                              "CLIPMOD_VERDICT=flagged",
                              "CLIPMOD_CATEGORY=weapons",
                              "CLIPMOD_ACTION=reject",
                              want_file,
                              "CLIPMOD_SOURCE=clipmodd:http",
                              "CLIPMOD_POLICY=0123456789abcdef",
                              "CLIPMOD_SCORE=0.8124",
                              "CLIPMOD_THRESHOLD=0.5000",
                              "CLIPMOD_FLAGGED_BY=image+context",
                              "CLIPMOD_CONTEXT_SCORE=0.7273",
                              "CLIPMOD_GENERATION=7"};
    size_t n = sizeof want_env / sizeof want_env[0];
    qsort(want_env, n, sizeof want_env[0], by_string);
    char want[4096];
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(want + used, sizeof want - used, "%s\n", want_env[i]);
    assert_string_equal(env, want); /* nothing else: no CLIPMOD_REASON, no test variables */

    assert_string_equal(line_value(dump, "argc="), "4");
    assert_string_equal(line_value(dump, "arg1="), out);
    assert_string_equal(line_value(dump, "arg2="), hostile);
    assert_string_equal(line_value(dump, "arg3="), "");
    assert_string_equal(line_value(dump, "arg4="), "two words");
    assert_int_equal(access(pwned, F_OK), -1);
    assert_int_equal(access(victim, F_OK), 0);
    free(env);
    free(dump);
}

/* /dev/null on 0-2, its own process group, clean signals, no leaked descriptor. */
static void process_setup(void **state)
{
    char out[128];
    snprintf(out, sizeof out, "%s/dump2.txt", dir);
    const char *argv[] = {dump_sh, out, NULL};
    cm_onflag *h = cm_onflag_new(argv, 0, 0, err, sizeof err);
    cm_onflag_event ev = {
        .verdict = "unscanned", .reason = "timeout", .score = NAN, .threshold = NAN};
    sigset_t block, old;
    /* As a daemon does: signals blocked for sigwait, SIGPIPE ignored. */
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    signal(SIGPIPE, SIG_IGN);
    int leak = open("/dev/zero", O_RDONLY);
    assert_int_equal(dup2(leak, LEAK_FD), LEAK_FD);
    close(leak);
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    close(LEAK_FD);
    signal(SIGPIPE, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_int_equal(cm_onflag_free(h, 10000), 0);
    wait_file(out);
    char *dump = slurp(out), *env = env_block(dump);
    assert_string_equal(env, "CLIPMOD_REASON=timeout\nCLIPMOD_VERDICT=unscanned\n"
                             "PATH=/usr/bin:/bin\n");
    assert_string_equal(line_value(dump, "fd0="), "/dev/null");
    assert_string_equal(line_value(dump, "fd1="), "/dev/null");
    assert_string_equal(line_value(dump, "fd2="), "/dev/null");
    assert_string_equal(line_value(dump, "leak="), "no");
    assert_string_equal(line_value(dump, "pgid="), line_value(dump, "pid="));
    assert_string_not_equal(line_value(dump, "pgid="), "");
    assert_int_not_equal(strtoll(line_value(dump, "pgid="), NULL, 10), (long long)getpgrp());
    assert_int_equal(strtoull(line_value(dump, "SigBlk:"), NULL, 16), 0);
    unsigned long long ign = strtoull(line_value(dump, "SigIgn:"), NULL, 16);
    assert_int_equal(ign & (1ull << (SIGPIPE - 1)), 0);
    free(env);
    free(dump);
}

/* Values are capped at 1024 bytes, never inside a UTF-8 sequence. */
static void values_capped(void **state)
{
    char out[128], big[3000], want[1100];
    snprintf(out, sizeof out, "%s/dump3.txt", dir);
    memset(big, 'a', 1023);
    memcpy(big + 1023, "\xc3\xa9", 2); /* 'é' across the 1024th byte */
    memset(big + 1025, 'b', 1000);
    big[2025] = '\0';
    const char *argv[] = {dump_sh, out, NULL};
    cm_onflag *h = cm_onflag_new(argv, 0, 0, err, sizeof err);
    cm_onflag_event ev = {.verdict = "flagged",
                          .filename = big,
                          .category = big + 1025,
                          .score = 1,
                          .threshold = 0.25};
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    assert_int_equal(cm_onflag_free(h, 10000), 0);
    wait_file(out);
    char *dump = slurp(out);
    memset(want, 'a', 1023);
    want[1023] = '\0';
    assert_string_equal(line_value(dump, "CLIPMOD_FILENAME="), want);
    assert_int_equal(strlen(line_value(dump, "CLIPMOD_CATEGORY=")), 1000);
    assert_string_equal(line_value(dump, "CLIPMOD_SCORE="), "1.0000");
    assert_string_equal(line_value(dump, "CLIPMOD_THRESHOLD="), "0.2500");
    free(dump);
}

/* ------------------------------------------------------------------------ */
/* Timeout, limits, failures.                                               */

static void timeout_kills_group(void **state)
{
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/sleep.pid", dir);
    const char *argv[] = {sleep_sh, pidfile, NULL};
    cm_onflag *h = cm_onflag_new(argv, 300, 0, err, sizeof err);
    cm_onflag_event ev = {.verdict = "flagged"};
    double t0 = cm_now();
    capture_start();
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    assert_int_equal(cm_onflag_running(h), 1);
    wait_file(pidfile);
    wait_idle(h);
    char *log = capture_end();
    /* The script's `sleep 60` was in its group: orphaned, it came back to us killed. */
    char *text = slurp(pidfile);
    pid_t sleeper = (pid_t)strtol(text, NULL, 10);
    assert_true(sleeper > 1);
    int st = reap_orphan(sleeper);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    assert_true(cm_now() - t0 < 10);
    assert_contains(log, "level=warn msg=\"on_flag timed out; its process group was killed\"");
    assert_contains(log, "timeout_ms=300");
    free(text);
    free(log);
    assert_int_equal(cm_onflag_free(h, 0), 0);
}

static void max_running_skips(void **state)
{
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/sleep2.pid", dir);
    const char *argv[] = {sleep_sh, pidfile, NULL};
    cm_onflag *h = cm_onflag_new(argv, 500, 1, err, sizeof err);
    cm_onflag_event ev = {.verdict = "flagged", .filename = "b.png"};
    capture_start();
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    assert_int_equal(cm_onflag_run(h, &ev), 1);
    assert_int_equal(cm_onflag_running(h), 1);
    char *log = capture_end();
    assert_contains(log, "level=warn msg=\"on_flag skipped\"");
    assert_contains(log, "filename=b.png");
    free(log);
    /* The first one is killed at 500 ms; free waits for it. */
    capture_start();
    assert_int_equal(cm_onflag_free(h, 10000), 0);
    free(capture_end());
    char *text = slurp(pidfile);
    reap_orphan((pid_t)strtol(text, NULL, 10));
    free(text);
}

/* Free before the hooks end: they are counted, and the last reaper frees. */
static void free_while_running(void **state)
{
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/sleep3.pid", dir);
    const char *argv[] = {sleep_sh, pidfile, NULL};
    cm_onflag *h = cm_onflag_new(argv, 400, 0, err, sizeof err);
    cm_onflag_event ev = {.verdict = "flagged"};
    assert_int_equal(cm_onflag_run(h, &ev), 0);
    wait_file(pidfile);
    assert_int_equal(cm_onflag_free(h, 10), 1);
    /* The reaper still kills the group at 400 ms (its timed-out line is logged). */
    char *text = slurp(pidfile);
    pid_t sleeper = (pid_t)strtol(text, NULL, 10);
    int st = reap_orphan(sleeper);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    poll(NULL, 0, 300); /* let the reaper finish freeing the hook (ASan checks at exit) */
    free(text);
}

static void failures_logged(void **state)
{
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-program", dir);
    const char *argv1[] = {missing, NULL}, *argv2[] = {fail_sh, NULL};
    cm_onflag *h1 = cm_onflag_new(argv1, 0, 0, err, sizeof err);
    cm_onflag *h2 = cm_onflag_new(argv2, 0, 0, err, sizeof err);
    cm_onflag_event ev = {.verdict = "flagged"};
    assert_non_null(h1);
    capture_start();
    assert_int_equal(cm_onflag_run(h1, &ev), 0); /* started; the exec fails in the child */
    assert_int_equal(cm_onflag_run(h2, &ev), 0);
    assert_int_equal(cm_onflag_free(h1, 10000), 0);
    assert_int_equal(cm_onflag_free(h2, 10000), 0);
    char *log = capture_end();
    assert_contains(log, "level=error msg=\"on_flag cannot start\"");
    assert_contains(log, "error=\"No such file or directory\"");
    assert_contains(log, missing);
    assert_contains(log, "level=warn msg=\"on_flag failed\"");
    assert_contains(log, "exit=3");
    free(log);
}

static void construction(void **state)
{
    const char *rel[] = {"bin/true", NULL}, *bare[] = {"true", NULL}, *none[] = {NULL};
    assert_null(cm_onflag_new(rel, 0, 0, err, sizeof err));
    assert_string_equal(err, "on-flag command must start with an absolute path, not 'bin/true'");
    assert_null(cm_onflag_new(bare, 0, 0, err, sizeof err));
    assert_null(cm_onflag_new(none, 0, 0, err, sizeof err));
    assert_string_equal(err, "on-flag command is empty: it needs the program's absolute path");
    assert_null(cm_onflag_new(NULL, 0, 0, err, sizeof err));
    assert_int_equal(cm_onflag_free(NULL, 0), 0);
    assert_int_equal(cm_onflag_running(NULL), 0);
    const char *ok[] = {"/bin/true", NULL};
    cm_onflag *h = cm_onflag_new(ok, 0, 0, err, sizeof err);
    assert_int_equal(cm_onflag_run(h, NULL), -1);
    assert_int_equal(cm_onflag_free(h, 0), 0);
}

/* The one question both configuration readers ask; buf is left alone on success. */
static void argv_problem(void **state)
{
    const char *ok[] = {"/bin/true", "-x"}, *rel[] = {"./hook.sh"};
    char buf[64] = "untouched";
    assert_int_equal(cm_onflag_argv_problem(ok, 2, buf, sizeof buf), 0);
    assert_string_equal(buf, "untouched");
    assert_int_equal(cm_onflag_argv_problem(ok, 0, buf, sizeof buf), -1);
    assert_string_equal(buf, "is empty: it needs the program's absolute path");
    assert_int_equal(cm_onflag_argv_problem(NULL, 0, buf, sizeof buf), -1);
    assert_int_equal(cm_onflag_argv_problem(rel, 1, buf, sizeof buf), -1);
    assert_string_equal(buf, "must start with an absolute path, not './hook.sh'");
    /* A long name is cut, never overflows. */
    char tiny[8];
    assert_int_equal(cm_onflag_argv_problem(rel, 1, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "must st");
}

/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(env_and_argv_exact), cmocka_unit_test(process_setup),
        cmocka_unit_test(values_capped),      cmocka_unit_test(timeout_kills_group),
        cmocka_unit_test(max_running_skips),  cmocka_unit_test(free_while_running),
        cmocka_unit_test(failures_logged),    cmocka_unit_test(construction),
        cmocka_unit_test(argv_problem),
    };
    char text[2048];
    snprintf(dir, sizeof dir, "/tmp/test_onflag.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    /* Orphans of the hooks come back to this process, so the test can see them die. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(dump_sh, sizeof dump_sh, "%s/dump.sh", dir);
    snprintf(text, sizeof text,
             "#!/bin/sh\n"
             "o=\"$1\"\n"
             "f0=$(readlink /proc/$$/fd/0) f1=$(readlink /proc/$$/fd/1)"
             " f2=$(readlink /proc/$$/fd/2)\n"
             "{\n"
             "  echo \"argc=$#\"\n"
             "  i=0; for a in \"$@\"; do i=$((i+1)); printf 'arg%%s=%%s\\n' $i \"$a\"; done\n"
             "  echo \"pid=$$\"\n"
             "  echo \"pgid=$(cut -d' ' -f5 /proc/$$/stat)\"\n"
             "  echo \"fd0=$f0\"; echo \"fd1=$f1\"; echo \"fd2=$f2\"\n"
             "  if [ -e /proc/$$/fd/%d ]; then echo leak=yes; else echo leak=no; fi\n"
             "  grep '^Sig\\(Blk\\|Ign\\):' /proc/$$/status | tr -d '\\t'\n"
             "  echo env-begin; tr '\\0' '\\n' < /proc/$$/environ; echo env-end\n"
             "} > \"$o.tmp\" 2>&1\n"
             "mv \"$o.tmp\" \"$o\"\n",
             LEAK_FD);
    write_script(dump_sh, text);
    snprintf(sleep_sh, sizeof sleep_sh, "%s/sleep.sh", dir);
    write_script(sleep_sh, "#!/bin/sh\n"
                           "sleep 60 &\n"
                           "echo $! > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"\n"
                           "wait\n");
    snprintf(fail_sh, sizeof fail_sh, "%s/fail.sh", dir);
    write_script(fail_sh, "#!/bin/sh\nexit 3\n");
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
