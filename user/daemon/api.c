// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "daemon/api.h"
#include "base/log.h"

struct client {
	int fd;
	time_t since;
	size_t in_len;
	char in[API_REQ_MAX + 1];
	char *out;		/* full response, owned */
	size_t out_len, out_off;
};

struct api {
	int lfd, ep;
	api_handler fn;
	void *ctx;
	struct client *cl[API_MAX_CLIENTS];
};

static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || end == colon + 1)
		return -EINVAL;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		host[strlen(host) - 1] = 0;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		*len = sizeof(*a);
		return inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1 ? 0 : -EINVAL;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		*len = sizeof(*a);
		if (!host[0])
			return 0;
		return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -EINVAL;
	}
}

struct api *api__new(const char *listen_addr, api_handler fn, void *ctx)
{
	struct api *a = calloc(1, sizeof(*a));
	struct epoll_event ev = { .events = EPOLLIN };
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, err;

	if (!a)
		return NULL;
	a->fn = fn;
	a->ctx = ctx;
	a->ep = -1;
	err = parse_listen(listen_addr, &ss, &len);
	if (err) {
		pr_warn("api: bad listen address '%s' (want ADDR:PORT)", listen_addr);
		goto out_free;
	}
	a->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->lfd < 0 || setsockopt(a->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(a->lfd, (struct sockaddr *)&ss, len) || listen(a->lfd, 64)) {
		err = -errno;
		pr_warn("api: cannot listen on %s: %s", listen_addr, strerror(errno));
		goto out_close;
	}
	a->ep = epoll_create1(EPOLL_CLOEXEC);
	ev.data.ptr = NULL;
	if (a->ep < 0 || epoll_ctl(a->ep, EPOLL_CTL_ADD, a->lfd, &ev)) {
		err = -errno;
		goto out_close;
	}
	return a;

out_close:
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->ep >= 0)
		close(a->ep);
out_free:
	free(a);
	errno = -err;
	return NULL;
}

int api__fd(const struct api *a)
{
	return a->ep;
}

static void client_free(struct api *a, struct client *c)
{
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		if (a->cl[i] == c)
			a->cl[i] = NULL;
	close(c->fd);
	free(c->out);
	free(c);
}

static void do_accept(struct api *a)
{
	for (;;) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct client *c;
		int slot;

		if (fd < 0)
			return;
		for (slot = 0; slot < API_MAX_CLIENTS && a->cl[slot]; slot++)
			;
		c = slot < API_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			close(fd);	/* too many clients: refuse rather than queue */
			continue;
		}
		c->fd = fd;
		c->since = time(NULL);
		ev.data.ptr = c;
		if (epoll_ctl(a->ep, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			free(c);
			continue;
		}
		a->cl[slot] = c;
	}
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	}
	return "Unknown";
}

static void set_reply(struct client *c, struct api_reply *r, bool head_only)
{
	size_t body = r->body.oom ? 0 : r->body.len;
	char hdr[256];
	int hl;

	if (r->body.oom)
		r->status = 500;
	hl = snprintf(hdr, sizeof(hdr),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		      "Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
		      r->status, status_text(r->status), r->content_type, body);
	c->out = malloc(hl + body);
	if (!c->out)
		return;
	memcpy(c->out, hdr, hl);
	if (body && !head_only)
		memcpy(c->out + hl, r->body.buf, body);
	c->out_len = hl + (head_only ? 0 : body);
}

static void error_reply(struct client *c, int status)
{
	struct api_reply r = { .status = status, .content_type = "application/json" };

	jb_init(&r.body);
	jb_obj_open(&r.body);
	jb_str(&r.body, "error", status_text(status));
	jb_obj_close(&r.body);
	set_reply(c, &r, false);
	jb_free(&r.body);
}

/* A full request head is in c->in: build the response. */
static void handle(struct api *a, struct client *c)
{
	char method[8], target[1024], path[1024];
	const char *q;
	struct api_reply r = { .status = 200, .content_type = "application/json" };
	bool head_only;

	if (sscanf(c->in, "%7s %1023s HTTP/1.%*c", method, target) != 2 || target[0] != '/') {
		error_reply(c, 400);
		return;
	}
	head_only = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head_only) {
		error_reply(c, 405);
		return;
	}
	q = strchr(target, '?');
	snprintf(path, sizeof(path), "%.*s", (int)(q ? q - target : (long)strlen(target)),
		 target);
	jb_init(&r.body);
	a->fn(a->ctx, path, q ? q + 1 : "", &r);
	set_reply(c, &r, head_only);
	jb_free(&r.body);
}

static void client_write(struct api *a, struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN) {
				struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

				epoll_ctl(a->ep, EPOLL_CTL_MOD, c->fd, &ev);
				return;
			}
			break;
		}
		c->out_off += n;
	}
	client_free(a, c);
}

static void client_read(struct api *a, struct client *c)
{
	ssize_t n;

	if (c->out) {
		client_write(a, c);
		return;
	}
	n = recv(c->fd, c->in + c->in_len, API_REQ_MAX - c->in_len, 0);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		client_free(a, c);
		return;
	}
	c->in_len += n;
	c->in[c->in_len] = 0;
	if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n"))
		handle(a, c);
	else if (c->in_len >= API_REQ_MAX)
		error_reply(c, 413);
	else
		return;
	if (!c->out) {
		client_free(a, c);
		return;
	}
	client_write(a, c);
}

void api__process(struct api *a)
{
	struct epoll_event evs[16];
	int n = epoll_wait(a->ep, evs, 16, 0);

	for (int i = 0; i < n; i++) {
		if (!evs[i].data.ptr)
			do_accept(a);
		else
			client_read(a, evs[i].data.ptr);
	}
}

void api__tick(struct api *a)
{
	time_t now = time(NULL);

	for (int i = 0; i < API_MAX_CLIENTS; i++)
		if (a->cl[i] && now - a->cl[i]->since > API_IDLE_SEC)
			client_free(a, a->cl[i]);
}

void api__free(struct api *a)
{
	if (!a)
		return;
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		if (a->cl[i])
			client_free(a, a->cl[i]);
	close(a->lfd);
	close(a->ep);
	free(a);
}

int api_query_get(const char *query, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *p = query;

	if (!n)
		return -EINVAL;
	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);

		if (seg > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			size_t vl = seg - kl - 1;

			if (vl >= n)
				vl = n - 1;
			memcpy(out, p + kl + 1, vl);
			out[vl] = 0;
			return 0;
		}
		p = amp ? amp + 1 : NULL;
	}
	return -ENOENT;
}
