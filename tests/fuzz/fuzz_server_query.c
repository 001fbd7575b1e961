/*
 * fuzz_server_query.c - libFuzzer target for the server's handling of the
 * request line: method, path and query string (br_srv_answer on GET, HEAD,
 * POST and any other method, through fuzz_server.h's libmicrohttpd-style
 * argument splitting and its invariants).
 *
 * Input: "[METHOD ]TARGET[\nBODY]" (see srv_fuzz_query_input).
 */
#include <stdint.h>

#include "fuzz_server.h"

static br_srv *srv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    srv = srv_fuzz_open();
    SRV_CHECK(srv);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_fuzz_query_input(srv, data, size);
    return 0;
}
