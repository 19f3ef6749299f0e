"""Alarms and the dashboard of one environment."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

FIVE_MINUTES = Duration.minutes(5)


class Monitoring(Construct):
    """Every alarm notifies ``topic``; the dashboard shows them all.

    Alarm names are physical and predictable (``<prefix><what>``) because the
    model release reads the candidate's alarms by name prefix instead of
    depending on this stack.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, topic: sns.ITopic, dashboard_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = cw_actions.SnsAction(topic)
        self.alarms: list[cw.Alarm] = []
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)

    def alarm(
        self,
        construct_id: str,
        *,
        name: str,
        metric: cw.IMetric,
        threshold: float,
        description: str,
        below: bool = False,
        evaluation_periods: int = 1,
        treat_missing_data: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> cw.Alarm:
        """An alarm on ``metric`` crossing ``threshold`` (missing data is fine unless
        ``treat_missing_data`` says otherwise)."""
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=(
                cw.ComparisonOperator.LESS_THAN_THRESHOLD
                if below
                else cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            ),
            treat_missing_data=treat_missing_data,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def graph(self, title: str, *metrics: cw.IMetric) -> None:
        """A dashboard row entry plotting ``metrics``."""
        self.dashboard.add_widgets(cw.GraphWidget(title=title, left=list(metrics), width=12))

    def finish(self) -> None:
        """Add the status of every alarm to the dashboard (after the last alarm)."""
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24)
        )
