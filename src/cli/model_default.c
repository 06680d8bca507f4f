/*
 * model_default.c - which installed model is the default (`clipmod model use`).
 *
 * Owns MODELS/default, a relative symbolic link to ORG/NAME inside the same
 * models directory. A link rather than a small file naming the model, because
 * every reader already takes a model *directory* (clipmodd's and the milter's
 * `model:` setting, clipmod's --model and its installed default): they follow the
 * link without knowing it exists. Relative, so the whole directory can move.
 */
#include "model_default.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_SIZE 4096

int model_default_is(const char *models, const char *repo)
{
    char link[PATH_SIZE], target[PATH_SIZE];
    int n = snprintf(link, sizeof link, "%s/%s", models, MODEL_DEFAULT_NAME);
    ssize_t got;

    if (n < 0 || (size_t)n >= sizeof link)
        return 0;
    got = readlink(link, target, sizeof target - 1);
    if (got < 0)
        return 0;
    target[got] = '\0';
    return strcmp(target, repo) == 0;
}

int model_default_set(const char *models, const char *repo, int quiet)
{
    char link[PATH_SIZE], tmp[PATH_SIZE], dir[PATH_SIZE];
    struct stat st;
    int a = snprintf(link, sizeof link, "%s/%s", models, MODEL_DEFAULT_NAME);
    int b = snprintf(tmp, sizeof tmp, "%s/.%s.%ld", models, MODEL_DEFAULT_NAME, (long)getpid());
    int c = snprintf(dir, sizeof dir, "%s/%s", models, repo);

    if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof link || (size_t)b >= sizeof tmp ||
        (size_t)c >= sizeof dir) {
        fprintf(stderr, "clipmod: the models directory's path is too long\n");
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "clipmod: %s is not installed in %s (`clipmod model fetch %s`)\n", repo,
                models, repo);
        return -1;
    }
    /* A real directory named "default" is the operator's own: never replace it. */
    if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
        fprintf(stderr,
                "clipmod: %s exists and is not a link made by `clipmod model use`; "
                "move it away first\n",
                link);
        return -1;
    }
    unlink(tmp);
    if (symlink(repo, tmp) != 0 || rename(tmp, link) != 0) {
        fprintf(stderr, "clipmod: cannot point %s at %s: %s\n", link, repo, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (!quiet)
        printf("default model: %s (%s -> %s)\n", repo, link, repo);
    return 0;
}

void model_default_drop(const char *models, int quiet)
{
    char link[PATH_SIZE];
    int n = snprintf(link, sizeof link, "%s/%s", models, MODEL_DEFAULT_NAME);

    if (n < 0 || (size_t)n >= sizeof link || unlink(link) != 0)
        return;
    if (!quiet)
        printf("%s removed: there is no default model now (`clipmod model use MODEL`)\n", link);
}
