/**
 * A UDP sender for the multi-port workload: small datagrams from one socket
 * to one destination port or to a random port for every datagram, as fast as
 * sendmmsg(2) goes, for a number of seconds. iperf3 sends each stream to one
 * port pair; this spreads the lookups of a per-port rule table over all of
 * it, so that they hit many cache lines (and many buckets), as many clients
 * of one host would. Built with clang (a prerequisite of the benchmark already) once per run.
 */
import { nsExec, run } from '../../test/helpers/net.js';
import { tempFile, tempPath } from './host.js';

const SPRAY_C = `
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* usage: spray DST_IP SECONDS PAYLOAD SRC_PORT DST_PORT (0 = a random port per datagram) */
int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s DST_IP SECONDS PAYLOAD SRC_PORT DST_PORT|0\\n", argv[0]);
		return 2;
	}
	double seconds = atof(argv[2]);
	size_t len = (size_t)atoi(argv[3]);
	int dport = atoi(argv[5]);
	static char payload[1500];
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
	struct sockaddr_in dst[BATCH];
	struct iovec iov = { .iov_base = payload, .iov_len = len < sizeof(payload) ? len : sizeof(payload) };
	struct mmsghdr msgs[BATCH];
	uint64_t x = 0x9e3779b97f4a7c15ull, sent = 0;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		perror("socket/bind");
		return 1;
	}
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		dst[i].sin_family = AF_INET;
		if (inet_pton(AF_INET, argv[1], &dst[i].sin_addr) != 1) {
			fprintf(stderr, "bad address %s\\n", argv[1]);
			return 2;
		}
		dst[i].sin_port = htons(dport);
		msgs[i].msg_hdr.msg_name = &dst[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(dst[i]);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	double end = now() + seconds, t0 = now();
	while (now() < end) {
		if (!dport) {
			for (int i = 0; i < BATCH; i++) {
				/* xorshift64: uniform enough over 1..65535, and cheap. */
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				dst[i].sin_port = htons((uint16_t)(1 + x % 65535));
			}
		}
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += n;
		else if (n < 0 && errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
			perror("sendmmsg");
			return 1;
		}
	}
	printf("%llu %.6f\\n", (unsigned long long)sent, now() - t0);
	return 0;
}
`;

let binary: Promise<string> | undefined;

/** Compile the sender (once per run); returns its path. */
function sprayBinary(): Promise<string> {
  binary ??= (async () => {
    const src = tempFile('spray.c', SPRAY_C);
    const out = tempPath('spray');
    await run('clang', ['-O2', '-Wall', '-o', out, src], { timeoutMs: 60_000 });
    return out;
  })();
  return binary;
}

/** Datagrams one spray run sent, and over how long. */
export interface SprayResult {
  sentPackets: number;
  seconds: number;
}

/** Source port of the sprayed datagrams: one no rule of the benchmark names. */
export const SPRAY_SOURCE_PORT = 40_000;

/** Send `length`-byte datagrams from ns to dstIp for `seconds`: to dstPort, or to random ports (dstPort 'random'). */
export async function spray(ns: string, dstIp: string, seconds: number, length: number, dstPort: number | 'random'): Promise<SprayResult> {
  const bin = await sprayBinary();
  const port = dstPort === 'random' ? '0' : String(dstPort);
  const r = await nsExec(ns, [bin, dstIp, String(seconds), String(length), String(SPRAY_SOURCE_PORT), port], { timeoutMs: seconds * 1000 + 15_000 });
  const [sent, secs] = r.stdout.trim().split(/\s+/).map(Number);
  if (!Number.isFinite(sent) || !Number.isFinite(secs)) throw new Error(`spray in ${ns} printed "${r.stdout.trim()}" (${r.stderr.trim()})`);
  return { sentPackets: sent!, seconds: secs! };
}
