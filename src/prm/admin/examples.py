"""Documentation and examples of the audit log, jobs and events (see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids

OPERATIONS = {
    "GET /admin/audit": Op(
        "Who read or changed what, when and from where, newest first; filter by actor, patient, resource "
        "or action. Every read and write of patient data is here.",
        query={"patient_id": ids.patient, "action": "read", "limit": 20}, given=["patient_read"]),
    "GET /admin/jobs": Op(
        "The organisation's background jobs (sending messages, reminders, journey steps, webhooks) with "
        "their status and attempts; `status=failed` lists what needs attention.",
        query={"status": "failed", "limit": 20}, given=["job"]),
    "POST /admin/jobs/{job_id}/retry": Op(
        "Puts a failed job back in the queue to run now.",
        errors=[Err(404, "not_found", "Job not found", "No job with this id in the organisation"),
                Err(409, "job_not_failed", "Only failed jobs can be retried; this one is 'succeeded'",
                    "The job has not failed")]),
    "GET /admin/events": Op(
        "Domain events (`patient.created`, `appointment.booked`, ...), newest first, as subscribers and "
        "outbound webhooks saw them.", query={"type": "patient.created", "limit": 20}, given=["patient"]),
}
