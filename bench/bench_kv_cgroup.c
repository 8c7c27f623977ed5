/*
 * bench_kv_cgroup.c - the memory cgroups of --mem-limit: each engine of the
 * comparison runs in a child process placed in a cgroup of its own whose
 * memory limit is the same for all, so an engine that caches in the page
 * cache (lmdb, sqlite3, dkv-buffered) lives under the same bound as one
 * that caches in its own memory (the kernel charges a cgroup for its
 * processes' memory and for the page cache they bring in).
 *
 * Entry points (bench_kv.h): kv_cgroup_probe, kv_cgroup_create,
 * kv_cgroup_enter, kv_cgroup_current, kv_cgroup_peak, kv_cgroup_oom,
 * kv_cgroup_remove.
 *
 * cgroup v2 is preferred: the cgroup goes under the process's own cgroup
 * when that one delegates the memory controller (cgroup.subtree_control),
 * with memory.max and memory.swap.max = 0.  Otherwise cgroup v1: under
 * the process's own cgroup of the memory hierarchy, with
 * memory.limit_in_bytes (and memory.memsw.limit_in_bytes when swap is
 * accounted).  Making a cgroup needs root.
 */
#include "bench_kv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_LIMIT (64ull << 20)       /* the trial cgroup's limit          */

/* Where a hierarchy is mounted: the mount point of a cgroup2 file system
   (v2), or of the cgroup file system with the memory controller (v1). */
static int find_mount(int version, char *out, size_t room)
{
    char line[1024], mnt[PATH_MAX], type[64], opts[512];
    int found = 0;
    FILE *f = fopen("/proc/self/mounts", "r");

    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%*s %4095s %63s %511s", mnt, type, opts) != 3)
            continue;
        if (version == 2 && strcmp(type, "cgroup2") == 0)
            found = 1;
        if (version == 1 && strcmp(type, "cgroup") == 0 &&
            (strstr(opts, ",memory") != NULL || strncmp(opts, "memory", 6) == 0))
            found = 1;
    }
    fclose(f);
    if (found)
        snprintf(out, room, "%s", mnt);
    return found;
}

/* The process's own cgroup in a hierarchy (/proc/self/cgroup: "0::/path"
   for v2, "N:...memory...:/path" for v1). */
static int own_path(int version, char *out, size_t room)
{
    char line[1024];
    int found = 0;
    FILE *f = fopen("/proc/self/cgroup", "r");

    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
        if (path == NULL)
            continue;
        *path++ = '\0';
        path[strcspn(path, "\n")] = '\0';
        if (version == 2 && strcmp(line, "0") == 0 && ctl[1] == '\0')
            found = 1;
        if (version == 1 && strstr(ctl + 1, "memory") != NULL)
            found = 1;
        if (found)
            snprintf(out, room, "%s", strcmp(path, "/") == 0 ? "" : path);
    }
    fclose(f);
    return found;
}

static int read_text(const char *path, char *buf, size_t room)
{
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return -1;
    n = read(fd, buf, room - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static int write_text(const char *path, const char *text)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY), ok;

    if (fd < 0)
        return -1;
    ok = write(fd, text, len) == (ssize_t)len;
    return close(fd) == 0 && ok ? 0 : -1;
}

/* 1 when the word is in the space-separated list of file path. */
static int has_word(const char *path, const char *word)
{
    char buf[1024], *tok, *save = NULL;

    if (read_text(path, buf, sizeof(buf)) != 0)
        return 0;
    for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
        if (strcmp(tok, word) == 0)
            return 1;
    return 0;
}

/* The directory new cgroups go in, for version 2 or 1; 0 when unusable. */
static int parent_dir(int version, char *out, size_t room)
{
    char mnt[PATH_MAX], own[PATH_MAX], file[PATH_MAX + 64];

    if (!find_mount(version, mnt, sizeof(mnt)) || !own_path(version, own, sizeof(own)))
        return 0;
    if ((size_t)snprintf(out, room, "%s%s", mnt, own) >= room)
        return 0;
    if (version == 1) {
        snprintf(file, sizeof(file), "%s/memory.limit_in_bytes", out);
        return access(file, W_OK) == 0 || access(out, W_OK) == 0;
    }
    snprintf(file, sizeof(file), "%s/cgroup.controllers", out);
    if (!has_word(file, "memory"))
        return 0;
    snprintf(file, sizeof(file), "%s/cgroup.subtree_control", out);
    /* Delegating fails while the cgroup itself holds processes (v2's "no
       internal processes"), unless it is the root: then v1, or nothing. */
    return has_word(file, "memory") || write_text(file, "+memory") == 0;
}

/* Makes and removes a cgroup, so that "enforced" means it works here. */
int kv_cgroup_probe(char *why, size_t room)
{
    struct kv_cgroup cg;
    char dir[PATH_MAX];

    if (geteuid() != 0) {
        snprintf(why, room, "not root: making a cgroup needs root");
        return 0;
    }
    if (!parent_dir(2, dir, sizeof(dir)) && !parent_dir(1, dir, sizeof(dir))) {
        snprintf(why, room, "no memory controller to use (cgroup v2 without a delegated "
                 "memory controller, and no cgroup v1 memory hierarchy)");
        return 0;
    }
    if (kv_cgroup_create(&cg, "probe", PROBE_LIMIT, why, room) != 0)
        return 0;
    kv_cgroup_remove(&cg);
    return 1;
}

static int set_limit(const struct kv_cgroup *cg, uint64_t limit)
{
    char file[sizeof(cg->path) + 64], text[32];

    snprintf(text, sizeof(text), "%llu", (unsigned long long)limit);
    if (cg->version == 2) {
        snprintf(file, sizeof(file), "%s/memory.swap.max", cg->path);
        if (access(file, F_OK) == 0)
            write_text(file, "0");
        snprintf(file, sizeof(file), "%s/memory.max", cg->path);
        return write_text(file, text);
    }
    snprintf(file, sizeof(file), "%s/memory.limit_in_bytes", cg->path);
    if (write_text(file, text) != 0)
        return -1;
    snprintf(file, sizeof(file), "%s/memory.memsw.limit_in_bytes", cg->path);
    if (access(file, F_OK) == 0)
        write_text(file, text);
    return 0;
}

int kv_cgroup_create(struct kv_cgroup *cg, const char *name, uint64_t limit,
                     char *why, size_t room)
{
    char dir[PATH_MAX];

    memset(cg, 0, sizeof(*cg));
    for (int v = 2; v >= 1 && cg->version == 0; v--) {
        if (!parent_dir(v, dir, sizeof(dir)))
            continue;
        if ((size_t)snprintf(cg->path, sizeof(cg->path), "%s/dkv-bench-%ld-%s", dir,
                             (long)getpid(), name) >= sizeof(cg->path))
            continue;
        if (mkdir(cg->path, 0755) != 0 && errno != EEXIST) {
            snprintf(why, room, "mkdir %s: %s", cg->path, strerror(errno));
            continue;
        }
        cg->version = v;
        if (set_limit(cg, limit) != 0) {
            snprintf(why, room, "setting the limit of %s: %s", cg->path,
                     strerror(errno));
            kv_cgroup_remove(cg);
        }
    }
    return cg->version != 0 ? 0 : -1;
}

int kv_cgroup_enter(const struct kv_cgroup *cg, pid_t pid)
{
    char file[sizeof(cg->path) + 32], text[32];

    snprintf(file, sizeof(file), "%s/cgroup.procs", cg->path);
    snprintf(text, sizeof(text), "%ld", (long)pid);
    return write_text(file, text);
}

static uint64_t read_u64(const struct kv_cgroup *cg, const char *name)
{
    char file[sizeof(cg->path) + 64], buf[64];

    snprintf(file, sizeof(file), "%s/%s", cg->path, name);
    if (cg->version == 0 || read_text(file, buf, sizeof(buf)) != 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

uint64_t kv_cgroup_current(const struct kv_cgroup *cg)
{
    return read_u64(cg, cg->version == 2 ? "memory.current" : "memory.usage_in_bytes");
}

uint64_t kv_cgroup_peak(const struct kv_cgroup *cg)
{
    return read_u64(cg, cg->version == 2 ? "memory.peak" : "memory.max_usage_in_bytes");
}

int kv_cgroup_oom(const struct kv_cgroup *cg)
{
    char file[sizeof(cg->path) + 32], buf[1024], *p;

    /* v2: memory.events; v1: memory.oom_control (kernels since 4.13). */
    snprintf(file, sizeof(file), "%s/%s", cg->path,
             cg->version == 2 ? "memory.events" : "memory.oom_control");
    if (cg->version == 0 || read_text(file, buf, sizeof(buf)) != 0 ||
        (p = strstr(buf, "oom_kill ")) == NULL)
        return 0;
    return strtoull(p + 9, NULL, 10) > 0;
}

void kv_cgroup_remove(struct kv_cgroup *cg)
{
    char file[sizeof(cg->path) + 32];

    if (cg->version == 0)
        return;
    if (cg->version == 1) {
        /* Moves the page cache still charged to the parent first. */
        snprintf(file, sizeof(file), "%s/memory.force_empty", cg->path);
        write_text(file, "0");
    }
    rmdir(cg->path);
    cg->version = 0;
}
