/* WASI conformance checks against wasi_snapshot_preview1: see wasi_conf.h. */
#include "wasi_conf.h"
