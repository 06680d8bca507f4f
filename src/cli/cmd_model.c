/*
 * cmd_model.c - `clipmod model`: list, fetch, verify, locate and remove real CLIP models.
 *
 * Owns the catalogue of models clipmod can install (which files, from which
 * revision of which Hugging Face repository, with what size and SHA-256 where
 * these are known), the models directories, and the download: resumable (each
 * file grows as NAME.part and continues with an HTTP Range request), checked
 * (size, SHA-256, and finally a real load with clipmod_model_load()), and
 * installed atomically (files gather in MODELS/.partial/ORG--NAME, on the same
 * file system, and the directory is renamed into place only when all of them
 * passed). A model directory therefore either is complete and checked or does
 * not exist; an interrupted fetch leaves only .partial behind.
 *
 * The hub is the operator's choice (--base-url, $CLIPMOD_HUB_URL: a mirror, or a
 * local server in tests), so downloads here are not held to fetch mode's SSRF
 * guard; they follow the hub's redirects (to its CDN), http(s) only, and never
 * from https down to http. Proxies from the environment are honoured.
 *
 * What the catalogue says about each model comes from clip-spec §1.3 and §7,
 * which read stored hub listings, not the live hub: where a file's presence is
 * not confirmed, `model list` says so, and a missing file produces instructions
 * instead of a bare 404.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "model_default.h"

#define DEFAULT_HUB "https://huggingface.co"
/*
 * The system-wide models directory (cli.h) is where clipmodd looks for its default
 * model ($(pkgdatadir)/models/default, beside the installed demo model, and what the
 * example milter configuration names), so that `clipmod model fetch --default` as
 * root is all a daemon needs.
 */
#define SYSTEM_MODELS CLI_MODELS_DIR
#define SUMS_FILE     "SHA256SUMS"
#define MAX_FILES     16
#define PATH_SIZE     4096
/* Leaves room under PATH_SIZE for ORG/NAME/FILE.part inside it. */
#define MAX_MODELS_DIR 2048

/* A hub that sends nothing for this long has stalled: stop, keep the .part, resume later. */
#define STALL_SECONDS   60
#define CONNECT_SECONDS 30

/* ------------------------------------------------------------------------ */
/* The catalogue                                                            */
/* ------------------------------------------------------------------------ */

typedef struct model_file {
    const char *name;         /* on the hub and in the model directory */
    const char *revision;     /* branch, tag or commit on the hub */
    uint64_t size;            /* bytes; 0: not known */
    const char *sha256;       /* lowercase hex; NULL: none published */
    int optional;             /* the model loads without it */
    const char *convert_from; /* the hub may lack this file: what to convert it from */
} model_file;

typedef struct model_def {
    const char *repo;   /* "openai/clip-vit-base-patch32" */
    const char *arch;   /* "ViT-B/32" */
    const char *approx; /* the weights' size, for people; NULL if unknown */
    const char *about;  /* where the weights come from and what is checked, in words */
    model_file files[MAX_FILES];
    size_t n_files;
} model_def;

/*
 * merges.txt of OpenAI's repositories: "#version: 0.2" and the 48,894 merges the
 * vocabulary uses, 524,619 bytes. clip-spec §4.4 rebuilt it from OpenAI's
 * bpe_simple_vocab_16e6.txt.gz and found that size in the listing of
 * openai/clip-vit-base-patch32 and in ComfyUI's copy of L/14's tokenizer.
 */
#define OPENAI_MERGES_SIZE 524619

/* clip-spec §1.3: the one published checksum, L/14's model.safetensors (1.71 GB). */
#define L14_SHA256 "a2bf730a0c7debf160f7a6b50b3aaf3703e7e88ac73de7a314903141db026dcb"

static const model_def builtin[] = {
    {"openai/clip-vit-base-patch32",
     "ViT-B/32",
     "605 MB",
     "main has only pytorch_model.bin; model.safetensors exists on the hub's automated "
     "conversion branch refs/pr/32 (not merged), which is where it is fetched from. No "
     "published SHA-256: sizes are checked where known, and SHA256SUMS records what was "
     "installed.",
     {{"config.json", "main", 0, NULL, 0, NULL},
      {"merges.txt", "main", OPENAI_MERGES_SIZE, NULL, 0, NULL},
      {"model.safetensors", "refs/pr/32", 0, NULL, 0, "pytorch_model.bin"},
      {"preprocessor_config.json", "main", 0, NULL, 1, NULL}},
     4},
    {"openai/clip-vit-base-patch16",
     "ViT-B/16",
     NULL,
     "model.safetensors is not confirmed on the hub (its listings show only "
     "pytorch_model.bin): if it is missing, fetch says how to convert pytorch_model.bin. No "
     "published SHA-256.",
     {{"config.json", "main", 0, NULL, 0, NULL},
      {"merges.txt", "main", OPENAI_MERGES_SIZE, NULL, 0, NULL},
      {"model.safetensors", "main", 0, NULL, 0, "pytorch_model.bin"},
      {"preprocessor_config.json", "main", 0, NULL, 1, NULL}},
     4},
    {"openai/clip-vit-large-patch14",
     "ViT-L/14",
     "1.71 GB",
     "model.safetensors is on main and its published SHA-256 is checked.",
     {{"config.json", "main", 0, NULL, 0, NULL},
      {"merges.txt", "main", OPENAI_MERGES_SIZE, NULL, 0, NULL},
      {"model.safetensors", "main", 0, L14_SHA256, 0, NULL},
      {"preprocessor_config.json", "main", 0, NULL, 1, NULL}},
     4},
    {"laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
     "ViT-B/32, exact GELU",
     NULL,
     "open_clip_model.safetensors (open_clip's file, open_clip tensor names) is not "
     "confirmed on the hub: if it is missing, fetch says how to convert "
     "open_clip_pytorch_model.bin. No published SHA-256.",
     {{"config.json", "main", 0, NULL, 0, NULL},
      {"merges.txt", "main", 0, NULL, 0, NULL},
      {"open_clip_model.safetensors", "main", 0, NULL, 0, "open_clip_pytorch_model.bin"},
      {"preprocessor_config.json", "main", 0, NULL, 1, NULL}},
     4},
};

/* The catalogue in use: the built-in models, then (or overridden by) a catalogue file's. */
typedef struct catalogue {
    model_def *v;
    size_t n;
    json_t *root; /* owns the strings of the file's entries */
} catalogue;

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct model_opts {
    const char *dir;      /* --models-dir */
    int system, user;     /* --system, --user */
    const char *base_url; /* --base-url, $CLIPMOD_HUB_URL */
    const char *catalog;  /* --catalog, $CLIPMOD_MODEL_CATALOG */
    int force, quiet;
    int make_default;       /* fetch --default */
    char models[PATH_SIZE]; /* the models directory in use */
} model_opts;

enum {
    OPT_MODELS_DIR = 256,
    OPT_SYSTEM,
    OPT_USER,
    OPT_BASE_URL,
    OPT_CATALOG,
    OPT_FORCE,
    OPT_DEFAULT
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clipmod model list [OPTION]...\n"
        "       clipmod model fetch [OPTION]... MODEL...\n"
        "       clipmod model verify [OPTION]... MODEL...\n"
        "       clipmod model path [OPTION]... MODEL\n"
        "       clipmod model remove [OPTION]... MODEL...\n"
        "       clipmod model use [OPTION]... MODEL\n"
        "Install real CLIP models from the Hugging Face hub (or a mirror) and check them.\n"
        "MODEL is a repository (openai/clip-vit-base-patch32) or its last part.\n"
        "\n"
        "  list     the models clipmod knows, where their files come from, what is\n"
        "           checked, and which are installed\n"
        "  fetch    download, check and install; an interrupted download resumes\n"
        "  verify   check an installed model's files (sizes, SHA-256) and that it loads\n"
        "  path     print the model's directory (exit 1 if it is not installed)\n"
        "  remove   delete an installed model and any partial download of it\n"
        "  use      make an installed model the default: MODELS/default, a link to it,\n"
        "           which clipmodd, clipmod-milter and clipmod scan load when not told\n"
        "           otherwise (list marks it)\n"
        "\n"
        "      --models-dir DIR  the models directory (default: $XDG_DATA_HOME/clipmod/models,\n"
        "                        else ~/.local/share/clipmod/models; for root %s)\n"
        "      --system          use %s\n"
        "      --user            use the per-user directory, even as root\n"
        "      --base-url URL    the hub or a mirror with its layout\n"
        "                        URL/REPO/resolve/REVISION/FILE (default: $CLIPMOD_HUB_URL,\n"
        "                        else %s)\n"
        "      --catalog FILE    more models, as JSON (default: $CLIPMOD_MODEL_CATALOG)\n"
        "      --force           fetch: download and install again even if installed\n"
        "      --default         fetch: then make the model the default (as `use`)\n"
        "  -q, --quiet           no progress bar or progress lines\n"
        "  -h, --help            show this help\n"
        "\n"
        "Exit status: 0 success; 1 verify found problems, or path/verify: not installed;\n"
        "2 an error (bad option, download or check failed).\n",
        SYSTEM_MODELS, SYSTEM_MODELS, DEFAULT_HUB);
}

/*
 * snprintf for paths and messages. Paths fit by construction (the models directory
 * is at most MAX_MODELS_DIR bytes and names are short); a message may be cut.
 * Returns 0 when everything fit.
 */
static int __attribute__((format(printf, 3, 4)))
fmt_to(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static const char *from_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* The models directory: --models-dir, --system, --user, else by who runs us. */
static int resolve_models_dir(model_opts *o)
{
    const char *xdg = from_env("XDG_DATA_HOME"), *home = from_env("HOME");
    int cut;
    size_t n;

    if (o->dir)
        cut = fmt_to(o->models, sizeof o->models, "%s", o->dir);
    else if (o->system || (!o->user && geteuid() == 0))
        cut = fmt_to(o->models, sizeof o->models, "%s", SYSTEM_MODELS);
    else if (xdg && xdg[0] == '/')
        cut = fmt_to(o->models, sizeof o->models, "%s/clipmod/models", xdg);
    else if (home)
        cut = fmt_to(o->models, sizeof o->models, "%s/.local/share/clipmod/models", home);
    else {
        fprintf(stderr, "clipmod: no models directory: set HOME or XDG_DATA_HOME, or give "
                        "--models-dir DIR\n");
        return -1;
    }
    n = strlen(o->models);
    if (cut || n > MAX_MODELS_DIR || n == 0) {
        fprintf(stderr, "clipmod: the models directory's path is empty or too long\n");
        return -1;
    }
    while (n > 1 && o->models[n - 1] == '/')
        o->models[--n] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Catalogue file                                                           */
/* ------------------------------------------------------------------------ */

/* A name that is safe as one path component: [A-Za-z0-9._-], not starting with '.'. */
static int is_component(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* "org/name", both safe components. */
static int is_repo(const char *s)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    return slash && is_component(s, (size_t)(slash - s)) &&
           is_component(slash + 1, strlen(slash + 1));
}

static int is_sha256(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

/* A revision: a branch, tag or commit, perhaps "refs/pr/N"; never "..". */
static int is_revision(const char *s)
{
    if (!s || !*s || strlen(s) > 128 || strstr(s, ".."))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '/'))
            return 0;
    return 1;
}

static const char *json_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/*
 * Read a catalogue file: {"models": [{"repo", "arch", "about", "approx", "files":
 * [{"name", "revision", "size", "sha256", "optional", "convert_from"}]}]}. Its
 * models come after the built-in ones and replace a built-in model of the same
 * repository. Every error names the file and the entry.
 */
static int load_catalogue_file(catalogue *c, const char *path)
{
    json_error_t jerr;
    json_t *models, *m;
    size_t i;

    c->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!c->root) {
        fprintf(stderr, "clipmod: %s:%d:%d: %s\n", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    models = json_object_get(c->root, "models");
    if (!json_is_array(models)) {
        fprintf(stderr, "clipmod: %s: needs a \"models\" array\n", path);
        return -1;
    }
    json_array_foreach(models, i, m)
    {
        model_def d;
        json_t *files = json_object_get(m, "files"), *f;
        size_t j;

        memset(&d, 0, sizeof d);
        d.repo = json_str(m, "repo");
        d.arch = json_str(m, "arch") ? json_str(m, "arch") : "";
        d.about = json_str(m, "about") ? json_str(m, "about") : "";
        d.approx = json_str(m, "approx");
        if (!is_repo(d.repo)) {
            fprintf(stderr, "clipmod: %s: models[%zu]: \"repo\" must be ORG/NAME\n", path, i);
            return -1;
        }
        if (!json_is_array(files) || !json_array_size(files) ||
            json_array_size(files) > MAX_FILES) {
            fprintf(stderr, "clipmod: %s: %s: \"files\" must list 1 to %d files\n", path, d.repo,
                    MAX_FILES);
            return -1;
        }
        json_array_foreach(files, j, f)
        {
            model_file *mf = &d.files[d.n_files++];
            json_t *size = json_object_get(f, "size");
            mf->name = json_str(f, "name");
            mf->revision = json_str(f, "revision") ? json_str(f, "revision") : "main";
            mf->sha256 = json_str(f, "sha256");
            mf->optional = json_is_true(json_object_get(f, "optional"));
            mf->convert_from = json_str(f, "convert_from");
            if (!mf->name || !is_component(mf->name, strlen(mf->name)) ||
                !is_revision(mf->revision) || (mf->sha256 && !is_sha256(mf->sha256)) ||
                (size && (!json_is_integer(size) || json_integer_value(size) < 0))) {
                fprintf(stderr,
                        "clipmod: %s: %s: files[%zu]: needs a plain \"name\", and a valid "
                        "\"revision\", \"size\" (bytes) and \"sha256\" (64 lowercase hex "
                        "digits) when given\n",
                        path, d.repo, j);
                return -1;
            }
            mf->size = size ? (uint64_t)json_integer_value(size) : 0;
        }
        size_t k;
        for (k = 0; k < c->n && strcasecmp(c->v[k].repo, d.repo); k++)
            ;
        if (k == c->n) {
            model_def *grown = realloc(c->v, (c->n + 1) * sizeof *grown);
            if (!grown) {
                fprintf(stderr, "clipmod: out of memory\n");
                return -1;
            }
            c->v = grown;
            c->n++;
        }
        c->v[k] = d;
    }
    return 0;
}

static int load_catalogue(catalogue *c, const model_opts *o)
{
    memset(c, 0, sizeof *c);
    c->v = malloc(sizeof builtin);
    if (!c->v) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    memcpy(c->v, builtin, sizeof builtin);
    c->n = sizeof builtin / sizeof builtin[0];
    return o->catalog ? load_catalogue_file(c, o->catalog) : 0;
}

static void catalogue_free(catalogue *c)
{
    free(c->v);
    json_decref(c->root);
    memset(c, 0, sizeof *c);
}

/* The model called `name`: its repository, or the repository's last part if unique. */
static const model_def *find_model(const catalogue *c, const char *name)
{
    const model_def *hit = NULL;
    int hits = 0;

    for (size_t i = 0; i < c->n; i++)
        if (!strcasecmp(c->v[i].repo, name))
            return &c->v[i];
    for (size_t i = 0; i < c->n; i++)
        if (!strcasecmp(strchr(c->v[i].repo, '/') + 1, name)) {
            hit = &c->v[i];
            hits++;
        }
    if (hits == 1)
        return hit;
    fprintf(stderr, "clipmod: %s: %s model; `clipmod model list` shows the known ones\n", name,
            hits ? "ambiguous" : "unknown");
    return NULL;
}

static const model_file *weights_file(const model_def *d)
{
    for (size_t i = 0; i < d->n_files; i++)
        if (strstr(d->files[i].name, ".safetensors"))
            return &d->files[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Paths and files                                                          */
/* ------------------------------------------------------------------------ */

/* MODELS/ORG/NAME: where the model is installed. */
static void final_dir(const model_opts *o, const model_def *d, char *buf, size_t size)
{
    fmt_to(buf, size, "%s/%s", o->models, d->repo);
}

/* MODELS/.partial/ORG--NAME plus `suffix`: where it is assembled, and its lock. */
static void partial_path(const model_opts *o, const model_def *d, const char *suffix, char *buf,
                         size_t size)
{
    const char *slash = strchr(d->repo, '/');
    fmt_to(buf, size, "%s/.partial/%.*s--%s%s", o->models, (int)(slash - d->repo), d->repo,
           slash + 1, suffix);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int mkdir_p(const char *path)
{
    char buf[PATH_SIZE];
    size_t n = strlen(path);

    if (n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* rm -r, without following symbolic links. Missing is fine. */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st))
        return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* SHA-256 of a file as 64 lowercase hex digits (GLib's GChecksum); *size its length. */
static int sha256_file(const char *path, char hex[65], uint64_t *size)
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    unsigned char *buf = malloc(1 << 20);
    FILE *f = fopen(path, "rb");
    uint64_t total = 0;
    size_t got;
    int rc = -1;

    if (!sum || !buf || !f)
        goto out;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0) {
        g_checksum_update(sum, buf, (gssize)got);
        total += got;
    }
    if (ferror(f))
        goto out;
    fmt_to(hex, 65, "%s", g_checksum_get_string(sum));
    if (size)
        *size = total;
    rc = 0;
out:
    if (f)
        fclose(f);
    free(buf);
    if (sum)
        g_checksum_free(sum);
    return rc;
}

static void human_size(uint64_t n, char *buf, size_t size)
{
    if (n >= 1000000000ull)
        fmt_to(buf, size, "%.2f GB", n / 1e9);
    else if (n >= 1000000ull)
        fmt_to(buf, size, "%.1f MB", n / 1e6);
    else if (n >= 1000ull)
        fmt_to(buf, size, "%.1f kB", n / 1e3);
    else
        fmt_to(buf, size, "%llu B", (unsigned long long)n);
}

/* ------------------------------------------------------------------------ */
/* Downloading one file                                                     */
/* ------------------------------------------------------------------------ */

typedef enum dl_status {
    DL_OK,
    DL_NOT_FOUND,   /* HTTP 404: the file is not there */
    DL_HTTP,        /* another HTTP error */
    DL_UNREACHABLE, /* DNS, connection, TLS: the hub cannot be reached (offline?) */
    DL_INTERRUPTED, /* the transfer broke off: the .part is kept to resume */
    DL_LOCAL        /* writing the file failed */
} dl_status;

typedef struct download {
    int fd;
    uint64_t offset; /* bytes in the .part when the request went out */
    uint64_t pos;    /* where the next body byte goes */
    long status;     /* of the latest response (redirects are followed) */
    long long range_start, range_total;
    int body_started;
    int write_errno;
    /* progress bar */
    int bar;
    const char *label;
    double start, last_draw;
    char errbuf[CURL_ERROR_SIZE];
} download;

/* Status and Content-Range of each response; redirect responses come and go. */
static size_t dl_header(char *line, size_t size, size_t count, void *p)
{
    download *d = p;
    size_t n = size * count;

    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        const char *sp = memchr(line, ' ', n);
        d->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        d->range_start = d->range_total = -1;
    } else if (n > 14 && !strncasecmp(line, "content-range:", 14)) {
        char buf[128];
        size_t k = n - 14 < sizeof buf - 1 ? n - 14 : sizeof buf - 1;
        long long a = -1, b = -1, total = -1;
        memcpy(buf, line + 14, k);
        buf[k] = '\0';
        if (sscanf(buf, " bytes %lld-%lld/%lld", &a, &b, &total) >= 2)
            d->range_start = a;
        else
            sscanf(buf, " bytes */%lld", &total);
        d->range_total = total;
    }
    return n;
}

/*
 * The body of the final response. A 206 continues the .part where it ends; a 200
 * means the server ignored the range (or none was asked): start the file over.
 * Any other status carries an error page, which is not kept.
 */
static size_t dl_body(char *data, size_t size, size_t count, void *p)
{
    download *d = p;
    size_t n = size * count;

    if (!d->body_started) {
        if (d->status == 206 && d->range_start == (long long)d->offset) {
            d->pos = d->offset;
        } else if (d->status == 200) {
            if (ftruncate(d->fd, 0)) {
                d->write_errno = errno;
                return 0;
            }
            d->pos = d->offset = 0;
        } else {
            return 0;
        }
        d->body_started = 1;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(d->fd, data + done, n - done, (off_t)d->pos);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            d->write_errno = errno;
            return 0;
        }
        done += (size_t)w;
        d->pos += (uint64_t)w;
    }
    return n;
}

static void bar_clear(download *d)
{
    if (d->bar && d->last_draw > 0)
        fputs("\r\033[K", stderr);
}

/* The progress bar: a terminal only, ten redraws a second at most. */
static int dl_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    download *d = p;
    double now = cm_now();
    char done_s[32], total_s[32], rate_s[32];

    if (!d->bar || now - d->last_draw < 0.1 || !d->body_started)
        return 0;
    d->last_draw = now;
    uint64_t done = d->offset + (uint64_t)dlnow;
    uint64_t total = dltotal > 0 ? d->offset + (uint64_t)dltotal : 0;
    double rate = now > d->start ? (double)dlnow / (now - d->start) : 0;
    human_size(done, done_s, sizeof done_s);
    human_size((uint64_t)rate, rate_s, sizeof rate_s);
    if (total) {
        const int width = 24;
        int filled = (int)((double)done / (double)total * width);
        char bar[32];
        human_size(total, total_s, sizeof total_s);
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '-';
        bar[width] = '\0';
        long eta = rate > 0 ? (long)((double)(total - done) / rate) : -1;
        fprintf(stderr, "\r\033[K  %-26.26s [%s] %5.1f%%  %s / %s  %s/s", d->label, bar,
                100.0 * (double)done / (double)total, done_s, total_s, rate_s);
        if (eta >= 0)
            fprintf(stderr, "  %ld:%02ld", eta / 60, eta % 60);
    } else {
        fprintf(stderr, "\r\033[K  %-26.26s %s  %s/s", d->label, done_s, rate_s);
    }
    fflush(stderr);
    return 0;
}

static int is_unreachable(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return 1;
    default:
        return 0;
    }
}

/* Every option of one download's handle: protocols, redirects, timeouts, callbacks. */
static void dl_setup(CURL *c, const char *url, download *d)
{
    const int https = !strncasecmp(url, "https:", 6);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* The hub redirects to its CDN; never from https down to plain http. */
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, CLIPMOD_USER_AGENT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_SECONDS);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)STALL_SECONDS);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->errbuf);
}

/* A .part that cannot be continued is emptied, so that the next run starts over. */
static void dl_discard(download *d, const char *part, char *why, size_t why_size)
{
    if (ftruncate(d->fd, 0))
        fmt_to(why, why_size, "cannot write %s: %s", part, strerror(errno));
}

/*
 * What a finished transfer means for the .part: whole (DL_OK), or why not. A range
 * the server cannot continue empties the .part (the next run starts over); an
 * interrupted transfer keeps it for the next run to continue.
 */
static dl_status dl_result(download *d, CURLcode cc, const char *url, const char *part, char *why,
                           size_t why_size)
{
    if (d->write_errno) {
        fmt_to(why, why_size, "cannot write %s: %s", part, strerror(d->write_errno));
        return DL_LOCAL;
    }
    /* Nothing left to send: the .part is whole if it is as long as the file. */
    if (d->offset && d->status == 416 && d->range_total == (long long)d->offset)
        return DL_OK;
    /* Nothing left to send although the .part is short, or another range than the one
     * asked for: what we have cannot be continued. */
    if ((d->offset && d->status == 416) || (d->status == 206 && !d->body_started)) {
        fmt_to(why, why_size,
               d->status == 416 ? "%s: the server cannot continue the partial download, which "
                                  "was deleted; run again"
                                : "%s: the server sent another range than asked for; the "
                                  "partial download was deleted, run again",
               url);
        dl_discard(d, part, why, why_size);
        return DL_HTTP;
    }
    if (d->status >= 400 ||
        (cc == CURLE_OK && !d->body_started && d->status != 200 && d->status != 206)) {
        fmt_to(why, why_size, "%s: HTTP %ld", url, d->status);
        return d->status == 404 ? DL_NOT_FOUND : DL_HTTP;
    }
    if (cc == CURLE_OK) {
        /* An empty 200 answer to a range request: the file is empty now. */
        if ((d->status == 200 && !d->body_started && d->offset && ftruncate(d->fd, 0)) ||
            fsync(d->fd)) {
            fmt_to(why, why_size, "cannot write %s: %s", part, strerror(errno));
            return DL_LOCAL;
        }
        return DL_OK;
    }
    if (is_unreachable(cc)) {
        fmt_to(why, why_size, "%s", d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc));
        return DL_UNREACHABLE;
    }
    fmt_to(why, why_size, "%s (%llu bytes kept in %s)",
           d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc),
           (unsigned long long)(d->body_started ? d->pos : d->offset), part);
    return DL_INTERRUPTED;
}

/*
 * Download `url` into `part`, continuing what is there. *why receives a sentence on
 * failure, *status the HTTP status of the last response.
 */
static dl_status download_file(const model_opts *o, const char *url, const char *part,
                               const char *label, char *why, size_t why_size, long *status)
{
    download d;
    struct stat st;
    CURL *c = NULL;
    char range[32];
    dl_status rc = DL_LOCAL;

    memset(&d, 0, sizeof d);
    *status = 0;
    d.fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (d.fd < 0 || fstat(d.fd, &st)) {
        fmt_to(why, why_size, "cannot write %s: %s", part, strerror(errno));
        goto out;
    }
    d.offset = (uint64_t)st.st_size;
    d.range_start = d.range_total = -1;
    d.label = label;
    d.bar = !o->quiet && isatty(STDERR_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
    d.start = cm_now();
    c = curl_easy_init();
    if (!c) {
        fmt_to(why, why_size, "out of memory");
        goto out;
    }
    dl_setup(c, url, &d);
    if (d.offset) {
        fmt_to(range, sizeof range, "%llu-", (unsigned long long)d.offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
        if (!o->quiet && !d.bar)
            fprintf(stderr, "  %s: resuming after %llu bytes\n", label,
                    (unsigned long long)d.offset);
    }

    CURLcode cc = curl_easy_perform(c);
    bar_clear(&d);
    *status = d.status;
    rc = dl_result(&d, cc, url, part, why, why_size);
out:
    if (c)
        curl_easy_cleanup(c);
    if (d.fd >= 0)
        close(d.fd);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* What to tell people                                                      */
/* ------------------------------------------------------------------------ */

static char *file_url(const model_opts *o, const model_def *d, const model_file *f)
{
    char *rev = curl_easy_escape(NULL, f->revision, 0); /* refs/pr/32 -> refs%2Fpr%2F32 */
    char *url = NULL;
    if (rev && asprintf(&url, "%s/%s/resolve/%s/%s", o->base_url, d->repo, rev, f->name) < 0)
        url = NULL;
    curl_free(rev);
    return url;
}

/* For a file the hub may lack: which file to take instead, and the one-line conversion. */
static void print_conversion(const model_opts *o, const model_def *d, const model_file *f)
{
    const model_file from = {f->convert_from, "main", 0, NULL, 0, NULL};
    char *url = file_url(o, d, &from);
    fprintf(stderr,
            "If the hub has no %s, download instead\n"
            "    %s\n"
            "and convert it there once, with PyTorch and the safetensors package:\n"
            "    python3 -c 'import torch; from safetensors.torch import save_file; "
            "sd = torch.load(\"%s\", map_location=\"cpu\"); "
            "save_file({k: v.contiguous() for k, v in sd.items()}, \"%s\")'\n",
            f->name, url ? url : f->convert_from, f->convert_from, f->name);
    free(url);
}

/* Exactly which files to fetch by hand, and where they go. */
static void print_manual(const model_opts *o, const model_def *d)
{
    char dir[PATH_SIZE];

    final_dir(o, d, dir, sizeof dir);
    fprintf(stderr,
            "To install %s by hand, download these files\n"
            "(from a machine that can reach the hub):\n",
            d->repo);
    for (size_t i = 0; i < d->n_files; i++) {
        const model_file *f = &d->files[i];
        char *url = file_url(o, d, f);
        fprintf(stderr, "    %s", url ? url : f->name);
        if (f->size)
            fprintf(stderr, "  (%llu bytes)", (unsigned long long)f->size);
        if (f->sha256)
            fprintf(stderr, "  (SHA-256 %s)", f->sha256);
        if (f->optional)
            fprintf(stderr, "  (optional)");
        fputc('\n', stderr);
        free(url);
    }
    fprintf(stderr, "and put them, with these names, in the directory\n    %s/\n", dir);
    for (size_t i = 0; i < d->n_files; i++)
        if (d->files[i].convert_from)
            print_conversion(o, d, &d->files[i]);
    fprintf(stderr, "Then check them with: clipmod model verify %s%s%s\n", d->repo,
            o->dir      ? " --models-dir "
            : o->system ? " --system"
            : o->user   ? " --user"
                        : "",
            o->dir ? o->dir : "");
}

/* ------------------------------------------------------------------------ */
/* fetch                                                                    */
/* ------------------------------------------------------------------------ */

/* A file on disk against the catalogue: size, then SHA-256 (always computed, for SHA256SUMS). */
static int check_file(const model_file *f, const char *path, char hex[65], char *why,
                      size_t why_size)
{
    uint64_t size;
    if (sha256_file(path, hex, &size)) {
        fmt_to(why, why_size, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (f->size && size != f->size) {
        fmt_to(why, why_size, "%s is %llu bytes, not the expected %llu", f->name,
               (unsigned long long)size, (unsigned long long)f->size);
        return 1;
    }
    if (f->sha256 && strcmp(hex, f->sha256)) {
        fmt_to(why, why_size, "%s: SHA-256 mismatch: expected %s, got %s", f->name, f->sha256, hex);
        return 1;
    }
    return 0;
}

/*
 * Say why file `f` did not download and tidy its .part: 0 when it is optional and
 * not on the hub (*skipped set), else EXIT_ERROR.
 */
static int dl_failed(const model_opts *o, const model_def *d, const model_file *f, dl_status ds,
                     const char *part, const char *why, int *skipped)
{
    struct stat st;

    switch (ds) {
    case DL_NOT_FOUND:
        unlink(part);
        if (f->optional) {
            if (!o->quiet)
                fprintf(stderr, "  %s: not on the hub (optional, skipped)\n", f->name);
            *skipped = 1;
            return 0;
        }
        fprintf(stderr, "clipmod: %s: %s is not on the hub at revision %s (%s)\n", d->repo, f->name,
                f->revision, why);
        print_manual(o, d);
        return EXIT_ERROR;
    case DL_UNREACHABLE:
        if (!stat(part, &st) && st.st_size == 0)
            unlink(part); /* nothing to resume */
        fprintf(stderr, "clipmod: %s: cannot reach %s: %s\n", d->repo, o->base_url, why);
        print_manual(o, d);
        return EXIT_ERROR;
    case DL_INTERRUPTED:
        fprintf(stderr,
                "clipmod: %s: the download of %s was interrupted: %s\n"
                "Run the same command again to resume it.\n",
                d->repo, f->name, why);
        return EXIT_ERROR;
    default:
        /* What was downloaded stays for the next run, unless there is nothing. */
        if (!stat(part, &st) && st.st_size == 0)
            unlink(part);
        fprintf(stderr, "clipmod: %s: %s\n", d->repo, why);
        return EXIT_ERROR;
    }
}

/*
 * Bring file `f` into the staging directory, checked. Returns 0 (present: *skipped
 * tells an optional file the hub does not have), else an exit status after saying
 * why.
 */
static int fetch_one(const model_opts *o, const model_def *d, const model_file *f,
                     const char *staging, char hex[65], int *skipped)
{
    char path[PATH_SIZE], part[PATH_SIZE], why[1024];
    char *url = NULL;
    long status;
    int rc = EXIT_ERROR;

    *skipped = 0;
    fmt_to(path, sizeof path, "%s/%s", staging, f->name);
    fmt_to(part, sizeof part, "%s/%s.part", staging, f->name);
    /* Finished by an earlier run: checked again, as anything on disk may have changed. */
    if (exists(path)) {
        int bad = check_file(f, path, hex, why, sizeof why);
        if (!bad)
            return 0;
        if (bad < 0) {
            fprintf(stderr, "clipmod: %s\n", why);
            return EXIT_ERROR;
        }
        unlink(path);
    }
    url = file_url(o, d, f);
    if (!url) {
        fprintf(stderr, "clipmod: out of memory\n");
        return EXIT_ERROR;
    }
    if (!o->quiet)
        fprintf(stderr, "%s %s\n", exists(part) ? "resuming" : "fetching", url);
    struct stat st;
    if (f->size && !stat(part, &st) && (uint64_t)st.st_size > f->size && truncate(part, 0)) {
        fprintf(stderr, "clipmod: cannot write %s: %s\n", part, strerror(errno));
        goto out;
    }
    dl_status ds = DL_OK;
    if (!(f->size && !stat(part, &st) && (uint64_t)st.st_size == f->size))
        ds = download_file(o, url, part, f->name, why, sizeof why, &status);
    if (ds != DL_OK) {
        rc = dl_failed(o, d, f, ds, part, why, skipped);
        goto out;
    }
    int bad = check_file(f, part, hex, why, sizeof why);
    if (bad) {
        /* A wrong file must not be resumed: the next run starts it over. */
        if (bad > 0)
            unlink(part);
        fprintf(stderr, "clipmod: %s: %s%s\n", d->repo, why,
                bad > 0 ? "; the download was deleted (nothing was installed)" : "");
        goto out;
    }
    if (rename(part, path)) {
        fprintf(stderr, "clipmod: cannot rename %s: %s\n", part, strerror(errno));
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "  %s: %s%s\n", f->name, f->sha256 ? "SHA-256 OK, " : "",
                f->size ? "size OK" : "downloaded");
    rc = 0;
out:
    free(url);
    return rc;
}

static int write_sums(const char *staging, const model_def *d, char hex[][65], const int *have)
{
    char path[PATH_SIZE];
    FILE *f;

    fmt_to(path, sizeof path, "%s/%s", staging, SUMS_FILE);
    f = fopen(path, "w");
    if (!f)
        return -1;
    for (size_t i = 0; i < d->n_files; i++)
        if (have[i])
            fprintf(f, "%s  %s\n", hex[i], d->files[i].name);
    return fclose(f);
}

static int lock_model(const model_opts *o, const model_def *d)
{
    char path[PATH_SIZE];
    int fd;

    partial_path(o, d, ".lock", path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "clipmod: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        fprintf(stderr, "clipmod: %s: another `clipmod model` is working on it (%s is locked)\n",
                d->repo, path);
        close(fd);
        return -1;
    }
    return fd; /* released when the process exits or the fd is closed */
}

/*
 * Every file of `d` into `staging` (required ones first, the weights among them, so
 * that a missing one stops us early), their checksums beside them, and the last
 * check, the real one: the files load as a model. 0, or the exit status.
 */
static int stage_files(const model_opts *o, const model_def *d, const char *staging)
{
    char hex[MAX_FILES][65], err[CLIPMOD_ERROR_SIZE];
    int have[MAX_FILES] = {0};
    int rc, skipped;
    clipmod_model *m = NULL;

    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < d->n_files; i++) {
            if (d->files[i].optional != pass)
                continue;
            rc = fetch_one(o, d, &d->files[i], staging, hex[i], &skipped);
            if (rc)
                return rc;
            have[i] = !skipped;
        }
    if (write_sums(staging, d, hex, have)) {
        fprintf(stderr, "clipmod: cannot write %s/%s: %s\n", staging, SUMS_FILE, strerror(errno));
        return EXIT_ERROR;
    }
    if (clipmod_model_load(staging, NULL, &m, err)) {
        fprintf(stderr,
                "clipmod: %s: the downloaded files do not load as a model: %s\n"
                "They stay in %s; `clipmod model remove %s` deletes them.\n",
                d->repo, err, staging, d->repo);
        return EXIT_ERROR;
    }
    if (!o->quiet)
        fprintf(stderr, "  loads: %s\n", clipmod_model_describe(m));
    clipmod_model_free(m);
    return 0;
}

/*
 * Move the staged model to `dir`. Replacing: the old directory steps aside to `old`
 * first, so a failure keeps one of the two. 0 or -1 (said on stderr).
 */
static int install_staged(const model_opts *o, const model_def *d, const char *staging,
                          const char *dir, const char *old)
{
    char org[PATH_SIZE];

    fmt_to(org, sizeof org, "%s/%.*s", o->models, (int)(strchr(d->repo, '/') - d->repo), d->repo);
    if (mkdir_p(org)) {
        fprintf(stderr, "clipmod: cannot create %s: %s\n", org, strerror(errno));
        return -1;
    }
    if (exists(dir) && (remove_tree(old) || rename(dir, old))) {
        fprintf(stderr, "clipmod: cannot move %s aside: %s\n", dir, strerror(errno));
        return -1;
    }
    if (rename(staging, dir)) {
        fprintf(stderr, "clipmod: cannot install %s: %s\n", dir, strerror(errno));
        if (exists(old))
            rename(old, dir);
        return -1;
    }
    if (remove_tree(old))
        fprintf(stderr, "clipmod: warning: cannot remove %s: %s\n", old, strerror(errno));
    return 0;
}

static int fetch_model(const model_opts *o, const model_def *d)
{
    char dir[PATH_SIZE], staging[PATH_SIZE], old[PATH_SIZE], parent[PATH_SIZE];
    int lock, rc = EXIT_ERROR;

    final_dir(o, d, dir, sizeof dir);
    partial_path(o, d, "", staging, sizeof staging);
    partial_path(o, d, ".old", old, sizeof old);
    if (exists(dir) && !o->force) {
        printf("%s is already installed in %s (`clipmod model verify %s` checks it; --force "
               "fetches it again)\n",
               d->repo, dir, d->repo);
        return EXIT_CLEAN;
    }
    fmt_to(parent, sizeof parent, "%s/.partial", o->models);
    if (mkdir_p(parent)) {
        fprintf(stderr, "clipmod: cannot create %s: %s%s\n", parent, strerror(errno),
                errno == EACCES && !o->dir ? " (--user installs for you alone)" : "");
        return EXIT_ERROR;
    }
    lock = lock_model(o, d);
    if (lock < 0)
        return EXIT_ERROR;
    if (mkdir_p(staging)) {
        fprintf(stderr, "clipmod: cannot create %s: %s\n", staging, strerror(errno));
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "%s (%s) from %s into %s\n", d->repo, d->arch, o->base_url, dir);
    rc = stage_files(o, d, staging);
    if (rc)
        goto out;
    rc = EXIT_ERROR;
    if (install_staged(o, d, staging, dir, old))
        goto out;
    printf("installed %s in %s\n", d->repo, dir);
    if (!o->quiet)
        printf("use it with: clipmod scan -m %s ...\n", dir);
    rc = EXIT_CLEAN;
out:
    /* A run that got nothing leaves nothing: an empty staging directory goes. */
    if (rc)
        rmdir(staging);
    close(lock);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* list, verify, path, remove                                               */
/* ------------------------------------------------------------------------ */

/* Word-wrap `text` at 76 columns, each line indented by `indent`. */
static void print_wrapped(const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        size_t room = 76 - strlen(indent), n = strlen(p);
        if (n > room) {
            n = room;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = room;
        }
        printf("%s%.*s\n", indent, (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

static int cmd_list(const model_opts *o, const catalogue *c)
{
    printf("Models directory: %s\n", o->models);
    for (size_t i = 0; i < c->n; i++) {
        const model_def *d = &c->v[i];
        const model_file *w = weights_file(d);
        char dir[PATH_SIZE], staging[PATH_SIZE];
        final_dir(o, d, dir, sizeof dir);
        partial_path(o, d, "", staging, sizeof staging);
        printf("\n%s  (%s)\n", d->repo, d->arch);
        if (exists(dir))
            printf("    installed in %s%s\n", dir,
                   model_default_is(o->models, d->repo) ? " (the default)" : "");
        else if (exists(staging))
            printf("    not installed; a partial download is in %s (fetch resumes it)\n", staging);
        else
            printf("    not installed\n");
        if (w) {
            char size[32] = "";
            if (w->size)
                human_size(w->size, size, sizeof size);
            printf("    weights: %s%s%s%s, revision %s\n", w->name,
                   w->size || d->approx ? ", " : "", w->size ? size : "",
                   !w->size && d->approx ? d->approx : "", w->revision);
        }
        if (d->about && *d->about)
            print_wrapped(d->about, "    ");
    }
    return EXIT_CLEAN;
}

static int cmd_path(const model_opts *o, const model_def *d)
{
    char dir[PATH_SIZE];
    final_dir(o, d, dir, sizeof dir);
    puts(dir);
    if (!exists(dir)) {
        fprintf(stderr, "clipmod: %s is not installed (`clipmod model fetch %s`)\n", d->repo,
                d->repo);
        return EXIT_FOUND;
    }
    return EXIT_CLEAN;
}

/* The SHA-256 recorded for `name` in the model's SHA256SUMS, if it lists it. */
static int recorded_sum(const char *dir, const char *name, char hex[65])
{
    char path[PATH_SIZE], line[512];
    FILE *f;
    int found = 0;

    fmt_to(path, sizeof path, "%s/%s", dir, SUMS_FILE);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        char h[65], n[256];
        if (sscanf(line, "%64s %255s", h, n) == 2 && !strcmp(n, name) && is_sha256(h)) {
            memcpy(hex, h, 65);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static int verify_model(const model_opts *o, const model_def *d)
{
    char dir[PATH_SIZE], path[PATH_SIZE], hex[65], rec[65], err[CLIPMOD_ERROR_SIZE];
    int problems = 0;
    clipmod_model *m = NULL;

    final_dir(o, d, dir, sizeof dir);
    if (!exists(dir)) {
        printf("%s: not installed (%s does not exist)\n", d->repo, dir);
        return 1;
    }
    printf("%s in %s\n", d->repo, dir);
    for (size_t i = 0; i < d->n_files; i++) {
        const model_file *f = &d->files[i];
        uint64_t size;
        fmt_to(path, sizeof path, "%s/%s", dir, f->name);
        if (!exists(path)) {
            printf("    %s: %s\n", f->name, f->optional ? "absent (optional)" : "MISSING");
            problems += !f->optional;
            continue;
        }
        if (sha256_file(path, hex, &size)) {
            printf("    %s: cannot read: %s\n", f->name, strerror(errno));
            problems++;
            continue;
        }
        int has_rec = recorded_sum(dir, f->name, rec);
        if (f->size && size != f->size) {
            printf("    %s: WRONG SIZE: %llu bytes, expected %llu\n", f->name,
                   (unsigned long long)size, (unsigned long long)f->size);
            problems++;
        } else if (f->sha256 && strcmp(hex, f->sha256)) {
            printf("    %s: SHA-256 MISMATCH: %s, published %s\n", f->name, hex, f->sha256);
            problems++;
        } else if (has_rec && strcmp(hex, rec)) {
            printf("    %s: CHANGED since it was installed: SHA-256 %s, recorded %s\n", f->name,
                   hex, rec);
            problems++;
        } else {
            printf("    %s: OK (%llu bytes%s%s)\n", f->name, (unsigned long long)size,
                   f->sha256 ? ", published SHA-256" : "",
                   !f->sha256 && has_rec ? ", SHA-256 as installed" : "");
        }
    }
    if (clipmod_model_load(dir, NULL, &m, err)) {
        printf("    does not load: %s\n", err);
        problems++;
    } else {
        printf("    loads: %s\n", clipmod_model_describe(m));
        clipmod_model_free(m);
    }
    printf("%s: %s\n", d->repo, problems ? "PROBLEMS FOUND" : "OK");
    return problems ? 1 : 0;
}

static int remove_model(const model_opts *o, const model_def *d)
{
    char dir[PATH_SIZE], staging[PATH_SIZE], old[PATH_SIZE], lock[PATH_SIZE];
    int found, fd;

    final_dir(o, d, dir, sizeof dir);
    partial_path(o, d, "", staging, sizeof staging);
    partial_path(o, d, ".old", old, sizeof old);
    partial_path(o, d, ".lock", lock, sizeof lock);
    found = exists(dir) || exists(staging);
    if (!found) {
        printf("%s: not installed; nothing to remove\n", d->repo);
        return EXIT_CLEAN;
    }
    fd = lock_model(o, d);
    if (fd < 0)
        return EXIT_ERROR;
    const char *const paths[] = {dir, staging, old};
    for (size_t i = 0; i < 3; i++)
        if (remove_tree(paths[i])) {
            fprintf(stderr, "clipmod: cannot remove %s: %s\n", paths[i], strerror(errno));
            close(fd);
            return EXIT_ERROR;
        }
    unlink(lock);
    close(fd);
    printf("removed %s from %s\n", d->repo, o->models);
    return EXIT_CLEAN;
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

static int parse_options(int argc, char **argv, model_opts *o)
{
    static const struct option opts[] = {
        {"models-dir", required_argument, NULL, OPT_MODELS_DIR},
        {"system", no_argument, NULL, OPT_SYSTEM},
        {"user", no_argument, NULL, OPT_USER},
        {"base-url", required_argument, NULL, OPT_BASE_URL},
        {"catalog", required_argument, NULL, OPT_CATALOG},
        {"force", no_argument, NULL, OPT_FORCE},
        {"default", no_argument, NULL, OPT_DEFAULT},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_MODELS_DIR:
            o->dir = optarg;
            break;
        case OPT_SYSTEM:
            o->system = 1;
            break;
        case OPT_USER:
            o->user = 1;
            break;
        case OPT_BASE_URL:
            o->base_url = optarg;
            break;
        case OPT_CATALOG:
            o->catalog = optarg;
            break;
        case OPT_FORCE:
            o->force = 1;
            break;
        case OPT_DEFAULT:
            o->make_default = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_CLEAN;
        default:
            usage(stderr);
            return EXIT_ERROR;
        }
    }
    if (!!o->dir + o->system + o->user > 1) {
        fprintf(stderr, "clipmod: --models-dir, --system and --user exclude each other\n");
        return EXIT_ERROR;
    }
    if (!o->base_url)
        o->base_url = from_env("CLIPMOD_HUB_URL") ? from_env("CLIPMOD_HUB_URL") : DEFAULT_HUB;
    if (strncasecmp(o->base_url, "http://", 7) && strncasecmp(o->base_url, "https://", 8)) {
        fprintf(stderr, "clipmod: the hub's base URL must be http:// or https://, not '%s'\n",
                o->base_url);
        return EXIT_ERROR;
    }
    if (!o->catalog)
        o->catalog = from_env("CLIPMOD_MODEL_CATALOG");
    return resolve_models_dir(o) ? EXIT_ERROR : CLI_GO_ON;
}

/* One model's subcommand; fetch --default points the default at it once installed. */
static int run_one(const char *sub, const model_opts *o, const model_def *d)
{
    int r;

    if (!strcmp(sub, "use"))
        return model_default_set(o->models, d->repo, o->quiet) ? EXIT_ERROR : EXIT_CLEAN;
    if (!strcmp(sub, "verify"))
        return verify_model(o, d);
    if (!strcmp(sub, "path"))
        return cmd_path(o, d);
    if (strcmp(sub, "fetch")) {
        r = remove_model(o, d);
        /* A default left dangling would make the daemons fail later, far from here. */
        if (r == EXIT_CLEAN && model_default_is(o->models, d->repo))
            model_default_drop(o->models, o->quiet);
        return r;
    }
    r = fetch_model(o, d);
    if (r == EXIT_CLEAN && o->make_default && model_default_set(o->models, d->repo, o->quiet))
        r = EXIT_ERROR;
    return r;
}

int cmd_model(int argc, char **argv)
{
    model_opts o;
    catalogue cat = {0};
    char *base = NULL;
    int rc = parse_options(argc, argv, &o);

    if (rc != CLI_GO_ON)
        return rc;
    rc = EXIT_ERROR;
    /* "https://mirror/" and "https://mirror" name the same hub. */
    if (!(base = strdup(o.base_url)))
        goto out;
    for (size_t n = strlen(base); n > 8 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    o.base_url = base;
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "clipmod: libcurl could not be initialised\n");
        goto out;
    }
    if (load_catalogue(&cat, &o))
        goto cleanup;

    const char *sub = optind < argc ? argv[optind] : NULL;
    char **names = argv + optind + 1;
    int n_names = argc - optind - 1;
    if (!sub) {
        usage(stderr);
    } else if (!strcmp(sub, "list")) {
        if (n_names)
            fprintf(stderr, "clipmod: model list takes no model name\n");
        else
            rc = cmd_list(&o, &cat);
    } else if (!strcmp(sub, "fetch") || !strcmp(sub, "verify") || !strcmp(sub, "path") ||
               !strcmp(sub, "remove") || !strcmp(sub, "use")) {
        /* One default: path, use and fetch --default take exactly one model. */
        int one = !strcmp(sub, "path") || !strcmp(sub, "use") ||
                  (!strcmp(sub, "fetch") && o.make_default);
        if (!n_names || (one && n_names != 1)) {
            fprintf(stderr, "clipmod: model %s needs %s\n", sub,
                    one ? "one model name" : "one or more model names");
            goto cleanup;
        }
        rc = EXIT_CLEAN;
        for (int i = 0; i < n_names; i++) {
            const model_def *d = find_model(&cat, names[i]);
            int r;
            if (!d) {
                rc = EXIT_ERROR;
                continue;
            }
            r = run_one(sub, &o, d);
            if (r > rc)
                rc = r;
        }
    } else {
        fprintf(stderr, "clipmod: model: unknown command '%s'\n", sub);
        usage(stderr);
    }
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "clipmod: error writing to standard output: %s\n", strerror(errno));
        rc = EXIT_ERROR;
    }
cleanup:
    catalogue_free(&cat);
    curl_global_cleanup();
out:
    free(base);
    return rc;
}
