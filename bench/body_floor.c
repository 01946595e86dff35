/*
 * The floor under a large inference request: an HTTP/1.1 server that reads each request's head
 * and body (64 KiB reads, as NIO's) and writes a fixed answer, with no parsing beyond
 * Content-Length and no work. Loaded like the model server, it shows what the transport of a
 * 600 kB body and a 22 kB answer costs on this machine, apart from decoding and evaluating.
 *
 * Usage:
 *   cc -O2 -o body_floor bench/body_floor.c -lpthread
 *   ./body_floor PORT ANSWER_FILE       (127.0.0.1; the answer is sent as application/json)
 *   WRK_BODY_FILE=rows.json wrk -t1 -c1 -d4s -s oip.lua http://127.0.0.1:PORT/
 * where rows.json and oip.lua are what serve_compare.py writes to its temp folder (kept with
 * --keep-logs), and the answer is the model server's answer to rows.json.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *answer;
static size_t answer_length;

static void *serve(void *argument) {
    int fd = (int)(long)argument, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t capacity = 1 << 24, held = 0;
    char *buffer = malloc(capacity);
    for (;;) {
        char *end;
        while (!(end = memmem(buffer, held, "\r\n\r\n", 4))) {
            if (held + 65536 > capacity) goto done;
            ssize_t n = read(fd, buffer + held, 65536);
            if (n <= 0) goto done;
            held += n;
        }
        size_t head = end + 4 - buffer;
        buffer[head - 1] = 0;
        char *field = strcasestr(buffer, "\r\ncontent-length:");
        size_t body = field ? strtoul(field + 17, NULL, 10) : 0;
        if (head + body > capacity) goto done;
        while (held < head + body) {
            ssize_t n = read(fd, buffer + held, 65536);
            if (n <= 0) goto done;
            held += n;
        }
        if (write(fd, answer, answer_length) != (ssize_t)answer_length) goto done;
        memmove(buffer, buffer + head + body, held - head - body);
        held -= head + body;
    }
done:
    close(fd);
    free(buffer);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT ANSWER_FILE\n", argv[0]);
        return 2;
    }
    FILE *file = fopen(argv[2], "rb");
    if (!file) { perror(argv[2]); return 1; }
    fseek(file, 0, SEEK_END);
    long length = ftell(file);
    fseek(file, 0, SEEK_SET);
    answer = malloc(length + 128);
    int prefix = sprintf(answer, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %ld\r\n\r\n", length);
    if (fread(answer + prefix, 1, length, file) != (size_t)length) { perror("read"); return 1; }
    answer_length = prefix + length;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 128)) { perror("listen"); return 1; }
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        pthread_t thread;
        pthread_create(&thread, NULL, serve, (void *)(long)client);
        pthread_detach(thread);
    }
}
