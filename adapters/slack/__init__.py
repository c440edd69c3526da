"""The Slack front end: bolt listeners that call `bot.chat`, and Block Kit rendering of `bot.views`.

    app = build_app(service, settings)              # an AsyncApp, its client at settings.slack_api_url
    await run_slack(settings, http=False, port=3000)  # Socket Mode (SLACK_APP_TOKEN) or HTTP

Rendering (`render`, `blocks`) is pure: view-models in, `SlackMessage`s within Slack's limits out.
"""

from adapters.slack.blocks import SlackMessage
from adapters.slack.presenter import SlackPresenter
from adapters.slack.render import (
    notice_message,
    page_message,
    progress_message,
    result_messages,
    statistics_pages,
)
from adapters.slack.run import EVENTS_PATH, build_app, resume_sessions, run_slack

__all__ = [
    "EVENTS_PATH",
    "SlackMessage",
    "SlackPresenter",
    "build_app",
    "notice_message",
    "page_message",
    "progress_message",
    "result_messages",
    "resume_sessions",
    "run_slack",
    "statistics_pages",
]
