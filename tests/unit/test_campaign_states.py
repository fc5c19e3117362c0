"""A campaign's states: which actions apply where, and where they lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.domain.campaigns import Action, CampaignState, after
from herald.errors import Conflict

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
S = CampaignState

ALLOWED = {
    (Action.START, S.DRAFT): S.SENDING,
    (Action.PAUSE, S.SCHEDULED): S.PAUSED,
    (Action.PAUSE, S.SENDING): S.PAUSED,
    (Action.RESUME, S.PAUSED): S.SENDING,
    (Action.CANCEL, S.DRAFT): S.CANCELLED,
    (Action.CANCEL, S.SCHEDULED): S.CANCELLED,
    (Action.CANCEL, S.SENDING): S.CANCELLED,
    (Action.CANCEL, S.PAUSED): S.CANCELLED,
}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", list(CampaignState))
def test_every_action_from_every_state_leads_where_the_table_says_or_is_refused(
    action: Action, state: CampaignState
) -> None:
    expected = ALLOWED.get((action, state))
    if expected is None:
        with pytest.raises(Conflict) as refused:
            after(action, state, None, NOW)
        assert refused.value.code == "campaign_state"
        assert str(state) in refused.value.detail
    else:
        assert after(action, state, None, NOW) is expected


def test_a_start_or_resume_before_send_at_waits_scheduled_and_after_it_sends() -> None:
    later, earlier = NOW + timedelta(minutes=5), NOW - timedelta(seconds=1)
    assert after(Action.START, S.DRAFT, later, NOW) is S.SCHEDULED
    assert after(Action.RESUME, S.PAUSED, later, NOW) is S.SCHEDULED
    assert after(Action.START, S.DRAFT, earlier, NOW) is S.SENDING


def test_completed_and_cancelled_are_final() -> None:
    for state in (S.COMPLETED, S.CANCELLED):
        for action in Action:
            with pytest.raises(Conflict):
                after(action, state, None, NOW)
