/* core_testpoint.h: test-only pause points.
 *
 * DESIGN
 * Integration tests must provoke races at exact moments (a move between its
 * locks and its renames, GC between listing and marking, kill -9 in the
 * middle of a move) without sleeps. A pause point is a named place in a pool
 * job; when the environment variable CAIRN_TEST_PAUSE_POINTS (comma-separated
 * names) lists it and CAIRN_TEST_PAUSE_DIR names a directory, the job
 * creates <dir>/<name>.parked and waits until <dir>/<name>.go exists, then
 * removes the .parked file and goes on. The .go file is not consumed: once a
 * test created it, every later pass of that point goes straight through.
 * Without the variables a pause point costs one getenv.
 *
 * THREADS: pool jobs and cairn-admin only, never the loop (it waits).
 */
#ifndef CORE_TESTPOINT_H
#define CORE_TESTPOINT_H

/* Parks the calling thread at `name` if the environment asks for it. */
void core_testpoint(const char *name);

#endif
