/* cairnd_health.h: `cairnd --health-check`, the image's HEALTHCHECK (no curl
 * in the image). One GET /api2/json/ping on the server's first listen
 * address (a wildcard address becomes loopback), over TLS pinned to the
 * certificate in the config directory unless --no-tls. Exit status 0 when
 * it answers 200, 1 otherwise. */
#ifndef CAIRND_HEALTH_H
#define CAIRND_HEALTH_H

int cairnd_health_check(const char *config_dir, const char *listen, int no_tls);

#endif
