/*
 * bench_fio.c - running fio, the reference every mode of dkv-bench compares
 * itself against: finding it on PATH, quoting a path for its command line,
 * running it with JSON output and reading one job section's IOPS.
 *
 * Entry points:
 *   bench_fio_on_path     1 when an executable fio is on PATH
 *   bench_shell_quote     single-quotes a string for /bin/sh
 *   bench_fio_runtime     the --runtime value for a number of seconds
 *   bench_fio_run         runs a command line and reads jobs[0].<rw>.iops
 *
 * The JSON is not parsed in full: fio's layout puts the first job's "read"
 * and "write" objects after the "jobs" key, each with an "iops" key, and
 * that is all we read (a name counts as an object only when a colon and a
 * brace follow it: "rw" : "write" in the job's options is a value).
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIO_OUT_MAX     (16u << 20)     /* fio's JSON is a few KiB         */

int bench_fio_on_path(void)
{
    const char *path = getenv("PATH");
    char dir[4096];

    while (path != NULL && *path != '\0') {
        size_t len = strcspn(path, ":");
        if (len > 0 && len < sizeof(dir) - 5) {
            memcpy(dir, path, len);
            memcpy(dir + len, "/fio", 5);
            if (access(dir, X_OK) == 0)
                return 1;
        }
        path += len;
        path += *path == ':';
    }
    return 0;
}

int bench_shell_quote(char *out, size_t room, const char *s)
{
    size_t n = 0;

    if (room < 3)
        return -1;
    out[n++] = '\'';
    for (; *s != '\0'; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t len = piece ? 4 : 1;
        if (n + len + 2 > room)
            return -1;
        memcpy(out + n, piece ? piece : s, len);
        n += len;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return (int)n;
}

void bench_fio_runtime(char *out, size_t room, double seconds)
{
    if (seconds == (double)(long long)seconds)
        snprintf(out, room, "%lld", (long long)seconds);
    else
        snprintf(out, room, "%lldms", (long long)(seconds * 1000.0));
}

/* Reads all of f into a new NUL-terminated string (at most FIO_OUT_MAX
   bytes are kept).  NULL when out of memory. */
static char *read_all(FILE *f)
{
    size_t cap = 64 * 1024, len = 0, got;
    char *buf = malloc(cap), *bigger;

    while (buf != NULL) {
        if (len + 1 == cap && cap < FIO_OUT_MAX) {
            bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (buf == NULL) {
        while (fgetc(f) != EOF)             /* let fio finish writing */
            ;
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Finds the object named key ("read", "write") at or after p: the quoted
   name followed by a colon and an opening brace (the job's options also
   hold such strings as values, as in "rw" : "write").  NULL if none. */
static const char *find_object(const char *p, const char *key)
{
    char quoted[32];
    const char *q;

    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    for (p = strstr(p, quoted); p != NULL; p = strstr(p + 1, quoted)) {
        q = p + strlen(quoted);
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q++ != ':')
            continue;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q == '{')
            return q;
    }
    return NULL;
}

/* Finds the "iops" of the first job's section ("read" or "write"): the
   first such object after "jobs", then its "iops" key, then the number
   after the colon.  Returns 0 or -1. */
static int parse_fio_iops(const char *json, const char *section, double *iops)
{
    const char *p = strstr(json, "\"jobs\"");
    char *end;

    p = p ? find_object(p, section) : NULL;
    p = p ? strstr(p, "\"iops\"") : NULL;
    if (p == NULL)
        return -1;
    p += strlen("\"iops\"");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return -1;
    *iops = strtod(p, &end);
    return end != p && *iops >= 0.0 ? 0 : -1;
}

int bench_fio_run(const char *cmd, const char *section, double *iops)
{
    char *full, *out;
    FILE *pipe;
    int status, rc = -1;

    fprintf(stderr, "  $ %s\n", cmd);
    full = malloc(strlen(cmd) + 8);
    if (full == NULL)
        return -1;
    strcpy(full, cmd);
    strcat(full, " 2>&1");
    fflush(NULL);
    pipe = popen(full, "r");
    free(full);
    if (pipe == NULL) {
        fprintf(stderr, "dkv-bench: running fio: %s\n", strerror(errno));
        return -1;
    }
    out = read_all(pipe);
    status = pclose(pipe);
    if (out != NULL && status == 0 && parse_fio_iops(out, section, iops) == 0)
        rc = 0;
    else
        fprintf(stderr, "dkv-bench: fio gave no %s iops (exit status %d); "
                "its output began:\n%.600s\n", section,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, out ? out : "");
    free(out);
    return rc;
}
