/*
 * model_default.h - the default model of a models directory (`clipmod model use`).
 */
#ifndef CLIPMOD_CLI_MODEL_DEFAULT_H
#define CLIPMOD_CLI_MODEL_DEFAULT_H

#include <stddef.h>

/* The link's name in a models directory; the daemons load MODELS/default by default. */
#define MODEL_DEFAULT_NAME "default"

/*
 * Point MODELS/default at the installed model MODELS/REPO (REPO is "org/name"):
 * a relative symbolic link, replaced atomically (a new link renamed over the old
 * one), so a daemon starting meanwhile sees the old default or the new one.
 * Refuses when REPO is not installed or MODELS/default is not a link. Prints the
 * outcome or the error; returns 0 or -1.
 */
int model_default_set(const char *models, const char *repo, int quiet);

/* 1 when MODELS/default points at REPO, else 0. */
int model_default_is(const char *models, const char *repo);

/* Remove MODELS/default (the link only), saying so. */
void model_default_drop(const char *models, int quiet);

#endif
