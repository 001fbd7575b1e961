/*
 * fuzz_server_body.c - libFuzzer target for the server's JSON body handling:
 * each input is the body of POST /v1/recommend (br_srv_answer with
 * fuzz_server.h's invariants: a 200 has at most k results, none of the read
 * books unless include_read; anything else is a JSON error with 400, 404 or
 * 413). The body sits in an exact-size heap buffer without a NUL, so a read
 * one byte past it is an ASan report.
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
    srv_fuzz_body_input(srv, data, size);
    return 0;
}
