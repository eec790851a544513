"""A minimal Python Lambda runtime (Runtime API loop), hosting bench/boto3_function.py.

There is no Python Lambda runtime image here; this does what the managed one does for a
handler: import the module (its module-level code is the init), then loop
GET /invocation/next -> handler(event, context) -> POST /invocation/<id>/response.
Usage: python python_runtime.py MODULE.FUNCTION  (MODULE is looked up beside this file).
"""
import http.client
import importlib
import json
import os
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
module_name, func_name = sys.argv[1].rsplit(".", 1)
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
PREFIX = "/2018-06-01/runtime"


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self._deadline_ms = int(headers["Lambda-Runtime-Deadline-Ms"])

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def connect():
    conn = http.client.HTTPConnection(host, int(port))
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


conn = connect()
try:
    handler = getattr(importlib.import_module(module_name), func_name)
except Exception as err:  # init error, reported like the managed runtime does
    body = json.dumps({"errorMessage": str(err), "errorType": type(err).__name__}).encode()
    conn.request("POST", PREFIX + "/init/error", body, {"Content-Type": "application/json"})
    conn.getresponse().read()
    sys.exit(1)

while True:
    conn.request("GET", PREFIX + "/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    ctx = Context(resp.headers)
    try:
        result, kind = json.dumps(handler(event, ctx)).encode(), "response"
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        result = json.dumps({"errorMessage": str(err), "errorType": type(err).__name__}).encode()
        kind = "error"
    conn.request("POST", "%s/invocation/%s/%s" % (PREFIX, ctx.aws_request_id, kind), result,
                 {"Content-Type": "application/json"})
    conn.getresponse().read()
