"""Static file server for page.html that exits once the page POSTs its JSON result (see run.sh)."""
import argparse, json, math, os, sys, threading
from http.server import HTTPServer, BaseHTTPRequestHandler

ap = argparse.ArgumentParser()
for a in ("page", "dist", "models", "images", "out", "port-file"):
    ap.add_argument("--" + a, required=True)
ap.add_argument("--timeout", type=float, default=300)
args = ap.parse_args()

ROUTES = {"/faceapi/": args.dist, "/models/": args.models, "/images/": args.images}
TYPES = {".js": "text/javascript", ".json": "application/json", ".html": "text/html", ".png": "image/png",
         ".jpg": "image/jpeg", ".bin": "application/octet-stream"}
status = {"code": 2}


def round6(v):
    """6 significant digits keeps the reference small; the tests' tolerances are far coarser."""
    if isinstance(v, float):
        return v if v == 0 or not math.isfinite(v) else float(f"{v:.6g}")
    if isinstance(v, list):
        return [round6(x) for x in v]
    if isinstance(v, dict):
        return {k: round6(x) for k, x in v.items()}
    return v


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        file = args.page if path in ("/", "/page.html") else None
        for prefix, root in ROUTES.items():
            if path.startswith(prefix):
                cand = os.path.realpath(os.path.join(root, path[len(prefix):]))
                if cand.startswith(os.path.realpath(root) + os.sep):
                    file = cand
        if not file or not os.path.isfile(file):
            self.send_error(404)
            return
        body = open(file, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(os.path.splitext(file)[1], "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()
        if "error" in data:
            print("page error: " + data["error"], file=sys.stderr)
            status["code"] = 1
        else:
            with open(args.out, "w") as f:
                json.dump(round6(data), f, separators=(",", ":"))
                f.write("\n")
            status["code"] = 0
        threading.Thread(target=srv.shutdown).start()


srv = HTTPServer(("127.0.0.1", 0), Handler)
with open(args.port_file, "w") as f:
    f.write(str(srv.server_address[1]))
timer = threading.Timer(args.timeout, lambda: (print("timed out waiting for the page", file=sys.stderr), srv.shutdown()))
timer.daemon = True
timer.start()
srv.serve_forever()
sys.exit(status["code"])
