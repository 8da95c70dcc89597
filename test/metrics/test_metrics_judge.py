"""LLM judge against a tiny OpenAI-compatible server on 127.0.0.1 started by the test."""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from dualspeech.metrics.judge import JudgeConfig, JudgeError, LLMJudge, parse_score

KEY = "sk-test-secret-123"


class Handler(BaseHTTPRequestHandler):
    seen: list = []
    flaky = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        if Handler.flaky:
            Handler.flaky -= 1
            self.send_response(503)
            self.end_headers()
            return
        user = body["messages"][-1]["content"]
        # deterministic "grader": full marks when the system answer repeats the reference
        ref = user.split("Reference answer: ")[1].split("\n")[0]
        ans = user.split("System answer: ")[1]
        reply = "Score: 95" if ans == ref else "Score: 20"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.seen, Handler.flaky = [], 0
    monkeypatch.setenv("DUALSPEECH_JUDGE_URL", f"http://127.0.0.1:{httpd.server_port}/v1")
    monkeypatch.setenv("DUALSPEECH_JUDGE_KEY", KEY)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_judge_scores_through_endpoint_and_never_logs_key(server, caplog):
    judge = LLMJudge(JudgeConfig(enabled=True, model="judge-x", retries=2))
    with caplog.at_level(logging.DEBUG):
        assert judge.score("Where is the cat?", "On the mat.", "On the mat.") == 95
        assert judge.score("Where is the cat?", "On the mat.", "In the garden.") == 20
        Handler.flaky = 1   # one 503, then success: retried
        assert judge.score("q", "a", "a") == 95
    path, auth, body = Handler.seen[0]
    assert path == "/v1/chat/completions" and auth == f"Bearer {KEY}"
    assert body["model"] == "judge-x" and body["messages"][0]["role"] == "system"
    assert KEY not in caplog.text and KEY not in repr(judge)


def test_judge_errors(server, monkeypatch):
    monkeypatch.setenv("DUALSPEECH_JUDGE_KEY", "wrong-key")
    judge = LLMJudge(JudgeConfig(enabled=True, retries=0))
    with pytest.raises(JudgeError, match="HTTP 401") as err:
        judge.score("q", "a", "a")
    assert "wrong-key" not in str(err.value)
    monkeypatch.delenv("DUALSPEECH_JUDGE_URL")
    with pytest.raises(JudgeError, match="DUALSPEECH_JUDGE_URL"):
        LLMJudge(JudgeConfig(enabled=True))


def test_parse_score():
    assert parse_score("Score: 87") == 87
    assert parse_score(" 42 ") == 42
    for bad in ("great answer", "Score: 0", "Score: 150"):
        with pytest.raises(JudgeError):
            parse_score(bad)


def test_sqa_scoring_with_judge_and_split(server, tmp_path):
    """SQA records scored with BLEU + judge through the endpoint; split_by makes sub-test sets."""
    from dualspeech.config import build
    from dualspeech.metrics.scoring import Resources, ScoreConfig, score_records, split_records

    cfg = build(ScoreConfig, {"n_bootstrap": 10, "judge": {"enabled": True, "retries": 0},
                              "split_by": {"sqa_test": "lang"}}, "score")
    recs = [{"id": f"u{i}", "task": "sqa", "status": "ok", "text": hyp,
             "ref": {"question": "Who sat?", "answer": ans, "lang": lang}}
            for i, (hyp, ans, lang) in enumerate([("The cat.", "The cat.", "en"),
                                                   ("A dog.", "The cat.", "en"),
                                                   ("Le chat.", "Le chat.", "fr")])]
    groups = split_records("sqa_test", recs, cfg)
    assert {k: len(v) for k, v in groups.items()} == {"sqa_test:en": 2, "sqa_test:fr": 1}
    res = score_records(groups["sqa_test:en"], tmp_path, cfg, Resources(cfg))
    assert [r["judge"] for r in res["per_utt"]] == [95, 20]
    assert res["metrics"]["judge"]["value"] == 57.5 and res["meta"]["judge_model"] == "gpt-4o-mini"
    assert "bleu" in res["metrics"]
