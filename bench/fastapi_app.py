"""bench/fastapi_app.py - the seed 002 orchestrator's routes in Python FastAPI, the anchor
bench/http.sh compares `baton serve` against (the seed's own stack: FastAPI + uvicorn).

Same paths and JSON shapes as seed 002: /health, /work/next, /work/complete,
/work/failed, /workers, /queue. State is in memory (a list of work items and a dict of
workers), which favours this side: baton's /work/next also records the worker durably
in SQLite on every call.

Run: python3 -m uvicorn fastapi_app:app --app-dir bench --port 8081 --no-access-log
Debian packages: python3-fastapi python3-uvicorn.
"""
from datetime import datetime, timezone
from typing import Optional

from fastapi import FastAPI, Request
from pydantic import BaseModel

app = FastAPI(title="seed 002 orchestrator (bench anchor)")
QUEUE = {"pending": [], "in_progress": [], "completed": []}
WORKERS = {}
OFFLINE_AFTER_S = 120


class Complete(BaseModel):
    worker_id: str
    issue_number: Optional[int] = None
    pr_url: Optional[str] = None
    success: bool = True


class Failed(BaseModel):
    worker_id: str
    issue_number: Optional[int] = None
    error: str = ""


def seen(worker_id, ip, status, task=None):
    WORKERS[worker_id] = {"id": worker_id, "ip": ip, "status": status, "current_task": task,
                          "last_seen": datetime.now(timezone.utc)}


@app.get("/health")
async def health():
    now = datetime.now(timezone.utc)
    available = sum(1 for w in WORKERS.values() if w["status"] == "idle"
                    and (now - w["last_seen"]).total_seconds() <= OFFLINE_AFTER_S)
    return {"status": "healthy", "workers": {"total": len(WORKERS), "available": available},
            "queue": {k: len(v) for k, v in QUEUE.items()}, "github_connected": False}


@app.get("/work/next")
async def work_next(worker_id: str, request: Request):
    if not QUEUE["pending"]:
        seen(worker_id, request.client.host, "idle")
        return {"work_available": False}
    item = QUEUE["pending"].pop(0)
    QUEUE["in_progress"].append(item)
    seen(worker_id, request.client.host, "busy", item["issue_number"])
    return {"work_available": True, **item,
            "branch_name": "ai-feature/issue-%d" % item["issue_number"]}


def finish(worker_id, issue_number, where):
    for item in QUEUE["in_progress"]:
        if item["issue_number"] == issue_number:
            QUEUE["in_progress"].remove(item)
            QUEUE[where].append(item)
            break
    if worker_id in WORKERS:
        WORKERS[worker_id].update(status="idle", current_task=None,
                                  last_seen=datetime.now(timezone.utc))


@app.post("/work/complete")
async def work_complete(body: Complete):
    finish(body.worker_id, body.issue_number, "completed" if body.success else "pending")
    return {"ok": True}


@app.post("/work/failed")
async def work_failed(body: Failed):
    finish(body.worker_id, body.issue_number, "pending")
    return {"ok": True}


@app.get("/workers")
async def workers():
    now = datetime.now(timezone.utc)
    return {"workers": [dict(w, last_seen=w["last_seen"].strftime("%Y-%m-%dT%H:%M:%S"),
                             health="healthy" if (now - w["last_seen"]).total_seconds()
                             <= OFFLINE_AFTER_S else "unhealthy") for w in WORKERS.values()]}


@app.get("/queue")
async def queue():
    return QUEUE
