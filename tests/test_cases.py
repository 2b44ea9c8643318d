"""The review loop on the real pipeline (SQLite store, archive, fetcher from a local HTTP server, matcher):
every match opens a case, a dismissal keeps the same picture (or a near-duplicate) from alerting again for
that known item, in the scope chosen, and reopening lifts it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.cases import CaseConflict, CaseDesk
from bot.config import MatchingConfig
from bot.matching.matcher import Matcher
from bot.pipeline import Pipeline
from bot.store.review import CaseNotFound
from tests.test_pipeline import NOW, evidence, frame_png, make_post, parts, serve  # noqa: F401 (fixtures)
from watchers.base import PollResult
from bot.store.review import CaseQuery


def run(pipeline, httpserver, post_id: str, account: str = "MinistryOfDefence", path: str = "/media/a.jpg"):
    pipeline.ingest("x", account, PollResult([make_post(httpserver, post_id, account, path)], post_id))
    return pipeline.process_pending()


def match_alerts(store, post_id: str):
    return [a for a in store.list_alerts("x", post_id) if a.kind == "match"]


def reencoded(data: bytes) -> bytes:
    """The same picture saved again at another JPEG quality: another file, a PDQ near-duplicate."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=60)
    assert out.getvalue() != data
    return out.getvalue()


def test_a_match_opens_one_case_and_its_alert_names_it(parts, httpserver, evidence):
    store, _, pipeline = parts
    serve(httpserver, "/media/a.jpg", evidence)
    run(pipeline, httpserver, "101")
    [case] = store.list_cases()
    assert (case.status, case.tier, case.kind, case.post_id) == ("open", "match", "match", "101")
    assert case.known["label"] == "Gunship sim trailer (2015)" and case.history[0].action == "opened"
    [alert] = match_alerts(store, "101")
    assert case.alert_key == alert.key and alert.payload["case_id"] == case.id
    pipeline.process(store.get_post("x", "101"))  # a rerun finds the same case
    assert store.count_cases() == 1


def test_dismissal_silences_the_same_picture_and_its_near_duplicates_on_that_account(parts, httpserver, evidence):
    store, archive, pipeline = parts
    desk = CaseDesk(store, archive, clock=lambda: NOW)
    serve(httpserver, "/media/a.jpg", evidence)
    run(pipeline, httpserver, "101")
    [case] = store.list_cases()
    decided = desk.decide(case.id, "dismiss", "ana", "the trailer is only similar", scope="account")
    assert decided.status == "dismissed" and decided.history[-1].by == "ana"
    [dismissal] = store.dismissals_for(case.known_item)
    assert dismissal.pdq and dismissal.scope == "account"

    run(pipeline, httpserver, "102")  # the identical file again
    serve(httpserver, "/media/b.jpg", reencoded(evidence))
    run(pipeline, httpserver, "103", path="/media/b.jpg")  # a re-encoded copy
    for post_id in ("102", "103"):
        assert match_alerts(store, post_id) == []
        silenced = [c for c in store.list_cases(CaseQuery(platform="x", post_id=post_id)) if c.kind == "match"][0]
        assert silenced.status == "dismissed" and silenced.alert_key is None
        assert silenced.history[-1].action == "suppressed" and case.id in silenced.history[-1].note

    run(pipeline, httpserver, "104", account="OtherMinistry")  # another account: not covered
    assert len(match_alerts(store, "104")) == 1

    desk.decide(case.id, "reopen", "bo")  # reopening lifts what the dismissal taught
    assert store.dismissals_for(case.known_item) == []
    run(pipeline, httpserver, "105")
    assert len(match_alerts(store, "105")) == 1


def test_global_dismissal_covers_every_account(parts, httpserver, evidence):
    store, archive, pipeline = parts
    serve(httpserver, "/media/a.jpg", evidence)
    run(pipeline, httpserver, "101")
    [case] = store.list_cases()
    CaseDesk(store, archive).decide(case.id, "dismiss", "ana", "not it", scope="global")
    run(pipeline, httpserver, "106", account="OtherMinistry")
    assert match_alerts(store, "106") == []


def test_decisions_follow_the_case_lifecycle(parts, httpserver, evidence):
    store, archive, pipeline = parts
    desk = CaseDesk(store, archive)
    serve(httpserver, "/media/a.jpg", evidence)
    run(pipeline, httpserver, "101")
    [case] = store.list_cases()
    with pytest.raises(CaseConflict):
        desk.decide(case.id, "reopen", "ana")
    confirmed = desk.decide(case.id, "confirm", "ana", "hoax: 2015 game footage")
    assert (confirmed.status, confirmed.note) == ("confirmed", "hoax: 2015 game footage")
    assert store.dismissals_for(case.known_item) == []  # confirming teaches no dismissal
    with pytest.raises(CaseConflict):
        desk.decide(case.id, "dismiss", "ana")
    with pytest.raises(ValueError, match="scope"):
        desk.decide(desk.decide(case.id, "reopen", "ana").id, "dismiss", "ana", scope="planet")
    with pytest.raises(CaseNotFound):
        desk.decide("missing", "confirm", "ana")
    assert [e.action for e in store.get_case(case.id).history] == ["opened", "confirmed", "reopened"]


def test_suggest_tier_waits_for_review_unless_configured(parts, httpserver, evidence):
    store, archive, _ = parts
    strict = MatchingConfig(min_inliers_match=10_000, pdq_match=0)  # everything this image gets is a suggestion
    for page, post_id in ((False, "107"), (True, "108")):
        pipeline = Pipeline(
            store, archive, parts[2].fetcher, Matcher(store, archive, strict), parts[2].tracker, clock=lambda: NOW,
            cases=CaseDesk(store, archive, suggest_to_chat=page, base_url="https://review.example.org/"),
        )
        serve(httpserver, "/media/a.jpg", evidence)
        run(pipeline, httpserver, post_id)
        case = next(c for c in store.list_cases(CaseQuery(platform="x", post_id=post_id)) if c.kind == "match")
        assert case.tier == "suggest" and case.status == "open"
        alerts = match_alerts(store, post_id)
        if page:
            assert alerts[0].payload["case_url"] == f"https://review.example.org/cases/{case.id}"
        else:
            assert alerts == []


def test_one_chat_message_per_post_lists_all_its_cases(parts, httpserver, evidence):
    from dataclasses import replace

    from bot.alerts.messages import render
    from bot.models import Media

    store, _, pipeline = parts
    serve(httpserver, "/media/a.jpg", evidence)
    serve(httpserver, "/media/b.jpg", reencoded(evidence))
    post = make_post(httpserver, "109")
    post = replace(post, media=(Media(httpserver.url_for("/media/a.jpg")), Media(httpserver.url_for("/media/b.jpg"))))
    pipeline.ingest("x", "MinistryOfDefence", PollResult([post], "109"))
    report = pipeline.process_pending()
    cases = store.list_cases(CaseQuery(platform="x", post_id="109"))
    assert len(cases) == 2 and report.alerts_enqueued == 1
    [message] = store.list_alerts("x", "109")
    assert message.payload["case_id"] in {c.id for c in cases}
    [other] = message.payload["also"]
    assert {other["case_id"], message.payload["case_id"]} == {c.id for c in cases}
    title, body = render(message)
    assert "(+1 more in this post)" in title and "Also in this post (1)" in body and other["case_id"] in body


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"source": "https://lists.example.net/"}, "match"),  # another list: the global bar
        ({"source": "https://example.org/", "pdq_match": 0, "min_inliers_match": 10_000}, "suggest"),
        ({"source": "https://example.org/", "pdq_suggest": 0, "min_inliers_suggest": 10_000}, None),
    ],
)
def test_a_stricter_bar_for_one_list_retiers_its_matches(parts, httpserver, evidence, rule, expected):
    from bot.config import ThresholdOverride

    store, archive, base = parts
    pipeline = Pipeline(store, archive, base.fetcher, base.matcher, base.tracker, clock=lambda: NOW,
                        cases=CaseDesk(store, archive, thresholds=[ThresholdOverride(**rule)]))
    serve(httpserver, "/media/a.jpg", evidence)
    run(pipeline, httpserver, "110")
    cases = [c for c in store.list_cases(CaseQuery(platform="x", post_id="110")) if c.kind == "match"]
    assert [c.tier for c in cases] == ([expected] if expected else [])
    assert len(match_alerts(store, "110")) == (1 if expected == "match" else 0)


def test_check_answers_under_the_same_rules(parts, evidence):
    from bot.config import ThresholdOverride
    from bot.matching.check import check_one

    store, archive, _ = parts
    strict = MatchingConfig(thresholds=[ThresholdOverride(source="https://example.org/", pdq_match=0, min_inliers_match=10_000)])
    assert check_one(Matcher(store, archive, MatchingConfig()), "q", lambda: evidence)["match"]["tier"] == "match"
    assert check_one(Matcher(store, archive, strict), "q", lambda: evidence)["match"]["tier"] == "suggest"
