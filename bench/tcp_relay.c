/*
 * The floor of one more hop: a TCP relay with no HTTP in it, for bench/gateway_compare.py.
 *
 * Each client connection is paired with its own connection to the upstream port, and bytes are
 * copied both ways as they come. Two threads (as the gateway has two event loops), each with its
 * own SO_REUSEPORT listener and epoll set. No parsing, no routing, no pooling: what it adds to a
 * request is what any proxy process on this machine must add (two wake-ups, four system calls),
 * so it shows how much of the gateway's added latency is the hop and how much is the gateway.
 *
 * With several upstream ports (comma-separated), each new client connection goes to the next one
 * in turn: the floor of a hop in front of two replicas.
 *
 * Usage: tcp_relay LISTEN_PORT UPSTREAM_PORT[,UPSTREAM_PORT...] [THREADS]   (all on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_UPSTREAMS 8
static int listen_port, upstream_ports[MAX_UPSTREAMS], upstream_count;
static atomic_uint connections;
static int peer_of[MAX_FDS];

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    return address;
}

static void watch(int epoll, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
}

static void *serve(void *unused) {
    (void)unused;
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = loopback(listen_port);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1024) != 0) {
        perror("tcp_relay: listen");
        exit(1);
    }
    int epoll = epoll_create1(0);
    watch(epoll, listener);
    static __thread char buffer[1 << 16];
    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept(listener, NULL, NULL);
                if (client < 0) continue;
                int upstream = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in target = loopback(upstream_ports[atomic_fetch_add(&connections, 1) % upstream_count]);
                if (client >= MAX_FDS || upstream >= MAX_FDS ||
                    connect(upstream, (struct sockaddr *)&target, sizeof target) != 0) {
                    close(client);
                    close(upstream);
                    continue;
                }
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer_of[client] = upstream;
                peer_of[upstream] = client;
                watch(epoll, client);
                watch(epoll, upstream);
                continue;
            }
            ssize_t count = read(fd, buffer, sizeof buffer);
            if (count <= 0) {
                close(peer_of[fd]);
                close(fd);
                continue;
            }
            for (ssize_t sent = 0; sent < count;) {
                ssize_t written = write(peer_of[fd], buffer + sent, (size_t)(count - sent));
                if (written <= 0) break;
                sent += written;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tcp_relay LISTEN_PORT UPSTREAM_PORT[,UPSTREAM_PORT...] [THREADS]\n");
        return 2;
    }
    listen_port = atoi(argv[1]);
    for (char *port = strtok(argv[2], ","); port && upstream_count < MAX_UPSTREAMS; port = strtok(NULL, ","))
        upstream_ports[upstream_count++] = atoi(port);
    if (upstream_count == 0) {
        fprintf(stderr, "tcp_relay: no upstream port\n");
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    pthread_t thread;
    for (int i = 0; i < threads; i++) pthread_create(&thread, NULL, serve, NULL);
    pthread_join(thread, NULL);
    return 0;
}
