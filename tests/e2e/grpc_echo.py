"""A real gRPC server (Debian's python3-grpcio) for the HTTP/2 e2e tests:
service demo.Echo, unary methods Say (echoes) and Fail (aborts NOT_FOUND).
Generic handlers with raw-bytes (de)serializers: no generated code needed.
usage: grpc_echo.py PORT"""
import sys
from concurrent import futures

import grpc


def say(request, context):
    return b"echo:" + request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
