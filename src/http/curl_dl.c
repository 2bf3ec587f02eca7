/*
 * curl_dl.c - libcurl loaded with dlopen on first use (see curl_dl.h). RTLD_LOCAL
 * keeps its symbols (and those of its dependencies) out of the global namespace;
 * RTLD_NOW resolves everything up front so a broken install fails here, with a
 * message, and not in the middle of a transfer. The handle is never closed (curl may
 * have resolver threads running code from it).
 */
#include "http/curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#define CURL_SONAME "libcurl.so.4"

bt_curl_api bt_curl;

static pthread_mutex_t bt_curl_mu = PTHREAD_MUTEX_INITIALIZER;
static int bt_curl_loaded;

/* dlsym returns void *; the POSIX way to turn it into a function pointer is to copy
 * the representation (ISO C has no conversion between the two). */
static int resolve(void *lib, const char *name, void *slot, size_t size, bt_error *err)
{
    void *sym = dlsym(lib, name);
    if (!sym)
        return bt_errorf(err, BT_EUNAVAIL,
                         "HTTP client support needs %s with %s (libcurl 7.85 or newer; Debian "
                         "package libcurl4): %s",
                         CURL_SONAME, name, dlerror());
    memcpy(slot, &sym, size);
    return 0;
}

static int load_locked(bt_error *err)
{
    void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return bt_errorf(err, BT_EUNAVAIL,
                         "HTTP client support needs %s (Debian package libcurl4; install it "
                         "with `apt-get install libcurl4`): %s",
                         CURL_SONAME, dlerror());
    bt_curl_api api;
    int rc = 0;
#define BT_CURL_RESOLVE(name)                                                                      \
    if (!rc)                                                                                       \
        rc = resolve(lib, "curl_" #name, &api.name, sizeof api.name, err);
    BT_CURL_FUNCS(BT_CURL_RESOLVE)
#undef BT_CURL_RESOLVE
    if (rc) {
        dlclose(lib);
        return rc;
    }
    bt_curl = api;
    bt_curl_loaded = 1;
    return 0;
}

int bt_curl_load(bt_error *err)
{
    pthread_mutex_lock(&bt_curl_mu);
    int rc = bt_curl_loaded ? 0 : load_locked(err);
    pthread_mutex_unlock(&bt_curl_mu);
    return rc;
}
