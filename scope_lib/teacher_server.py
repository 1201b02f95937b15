"""A minimal OpenAI-compatible completions server for scoring, speaking vLLM's protocol.

It answers what `scope_lib.teacher.ServerTeacher` asks a vLLM server: `POST /v1/completions`
with `prompt` as a list of token-id lists, `echo: true`, `max_tokens: 1`, `logprobs: N`;
each choice carries `logprobs.token_logprobs` for the echoed prompt tokens (`None` first).
It exists so the client is tested against a real HTTP server process on loopback, and so a
laptop can serve the tiny teacher the way the paper's cluster serves its 7B teacher.

    python -m scope_lib.teacher_server --model tiny --port 8000
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from scope_lib.logprobs import token_logprobs


def _handler(model, model_name: str):
    lock = __import__("threading").Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _reply(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                return self._reply(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            self._reply(404, {"error": f"unknown path {self.path}"})

        def do_POST(self):
            if self.path != "/v1/completions":
                return self._reply(404, {"error": f"unknown path {self.path}"})
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompts = request.get("prompt")
            if not (isinstance(prompts, list) and prompts and all(isinstance(p, list) for p in prompts)):
                return self._reply(400, {"error": "prompt must be a list of token-id lists"})
            if not request.get("echo"):
                return self._reply(400, {"error": "this server only scores: set echo=true"})
            choices = []
            with lock, torch.no_grad():
                for index, ids in enumerate(prompts):
                    tokens = torch.tensor([ids])
                    logp = token_logprobs(model, tokens, torch.ones_like(tokens))[0].tolist()
                    choices.append({"index": index, "text": "", "finish_reason": "length",
                                    "logprobs": {"token_logprobs": [None] + logp[1:], "tokens": [str(t) for t in ids]}})
            self._reply(200, {"object": "text_completion", "model": model_name, "choices": choices})

    return Handler


def serve(model, model_name: str, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A started-but-not-serving server; call `.serve_forever()` (or run it in a thread)."""
    return ThreadingHTTPServer((host, port), _handler(model.eval(), model_name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny', 'tiny_smoke' (the tiny world's teacher) or a HF path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.model in ("tiny", "tiny_smoke"):
        from scope_lib.models import SMOKE_WORLD, TINY_WORLD, build_tiny_world

        model = build_tiny_world(SMOKE_WORLD if args.model == "tiny_smoke" else TINY_WORLD, progress=False).teacher
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.model)
    server = serve(model, args.model, args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
