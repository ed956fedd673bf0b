/* A statically linked musl test program: musl's resolver (unconnected UDP, checks who
 * answered) and a plain connect. Usage: probe-musl NAME PORT PATH, or probe-musl --hostname
 * (the uname syscall, with no libc of this machine in the way) */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--hostname") == 0) {
        struct utsname names;
        char name[256];
        if (uname(&names) != 0 || gethostname(name, sizeof name) != 0) {
            perror("uname");
            return 1;
        }
        printf("nodename: %s\ngethostname: %s\nsysname: %s\nrelease: %s\nmachine: %s\n",
               names.nodename, name, names.sysname, names.release, names.machine);
        return 0;
    }
    struct addrinfo hints = {0}, *result;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int error = getaddrinfo(argv[1], argv[2], &hints, &result);
    if (error) {
        printf("getaddrinfo: %s\n", gai_strerror(error));
        return 1;
    }
    char text[64];
    struct sockaddr_in *resolved = (struct sockaddr_in *)result->ai_addr;
    printf("resolved: %s\n", inet_ntop(AF_INET, &resolved->sin_addr, text, sizeof text));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, result->ai_addr, result->ai_addrlen) != 0) {
        perror("connect");
        return 1;
    }
    struct sockaddr_in peer;
    socklen_t length = sizeof peer;
    getpeername(fd, (struct sockaddr *)&peer, &length);
    printf("peer: %s:%d\n", inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text), ntohs(peer.sin_port));
    char request[256];
    snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", argv[3], argv[1]);
    write(fd, request, strlen(request));
    char buffer[4096];
    ssize_t count;
    while ((count = read(fd, buffer, sizeof buffer)) > 0)
        fwrite(buffer, 1, count, stdout);
    printf("\n");
    return 0;
}
