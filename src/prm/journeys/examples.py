"""Documentation and examples of journeys (see docs/api-examples.md and docs/journeys.md). The request
bodies of create, edit, stages, advance and exit are the router's own `openapi_examples`."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {**not_found("journey", "journey_not_found", "Journey"),
             **not_found("instance", "journey_instance_not_found", "Journey instance")}
INVALID = Err(422, "invalid_definition", "definition.steps.2.next: no step 'nudge'",
              "The definition is inconsistent: `errors` lists every problem with its field")
NOT_ACTIVE = Err(409, "instance_not_active", "The journey instance is exited",
                 "The instance has completed or exited")

OPERATIONS = {
    "POST /journeys": Op(
        "Creates a journey's draft: triggers (events that enrol a patient), stages with their entry steps, "
        "steps (send a notification, wait, create a ticket, advance ...) and exit rules. Publish it to start "
        "enrolling.",
        errors=[Err(409, "journey_key_taken", "A journey with key 'new-patient' exists", "The key is taken"),
                INVALID]),
    "GET /journeys": Op("Journeys with their status (draft, active, retired); `trigger` finds the active "
                        "ones an event enrols into.", query={"status": "active"}, given=["journey"]),
    "GET /journeys/{journey_id}": Op(
        "One journey: its properties, status, active and latest version numbers, and its draft definition "
        "(what the next publish will freeze)."),
    "PATCH /journeys/{journey_id}": Op(
        "Edits the journey's name, description or entry policy, or replaces its draft definition; published "
        "versions never change (publish again to use the new draft).", errors=[INVALID]),
    "POST /journeys/{journey_id}/stages": Op(
        "Adds a stage and its steps to the draft, checked for shape here and for consistency at publish.",
        errors=[Err(409, "stage_exists", "The draft already has a stage 'follow-up'", "The stage key is taken"),
                Err(409, "step_exists", "The draft already has a step 'ask-feedback'", "A step id is taken")]),
    "POST /journeys/{journey_id}/publish": Op(path={"journey_id": ids.draft_journey}, errors=[INVALID]),
    "POST /journeys/{journey_id}/retire": Op(
        "Stops new enrolments; patients already in the journey carry on to the end."),
    "GET /journeys/{journey_id}/versions": Op("Every published version, newest first; each is frozen."),
    "GET /journeys/{journey_id}/versions/{number}": Op(
        "One published version as it was frozen, with its definition and when it was published.", path={"number": 1},
        errors=[Err(404, "journey_version_not_found", "Journey has no version 7", "No version with this number")]),
    "POST /journeys/{journey_id}/instances": Op(
        "Enrols a patient by hand into the journey's active version (events enrol them automatically); the "
        "entry policy decides whether a second enrolment is allowed. The first stage's actions start at once.",
        body={"patient_id": ids.patient, "context": {"source": "front desk"}},
        errors=[Err(409, "journey_not_active", "Journey 'new-patient' has no active version (publish it first)",
                    "The journey was never published, or is retired"),
                Err(409, "already_enrolled", "The patient is already in this journey",
                    "The entry policy allows one instance per patient (or key)"),
                Err(422, "patient_not_found", "patient_id: no such patient in this organisation",
                    "`patient_id` names no patient of the organisation")]),
    "GET /journey-instances": Op("Journey instances (a patient in a journey) with their stage and status.",
                                 query={"journey_id": ids.journey, "status": "active"}, given=["instance"]),
    "GET /journey-instances/{instance_id}": Op(
        "One instance: its stage, status, context and the stages it may move to next."),
    "POST /journey-instances/{instance_id}/advance": Op(
        errors=[NOT_ACTIVE, Err(409, "invalid_stage_transition", "Cannot move from 'welcome' to 'confirmed'",
                                "The current stage does not lead to that stage")]),
    "POST /journey-instances/{instance_id}/execute": Op(
        "Runs the current stage's actions again from its entry step (after fixing a template, say); the step "
        "run is queued and answered with 202.",
        errors=[NOT_ACTIVE, Err(409, "stage_has_no_actions", "The current stage has no actions",
                                "The stage has no entry step")]),
    "POST /journey-instances/{instance_id}/exit": Op(
        "Takes the patient out of the journey with a reason; pending waits are cancelled and nothing more is "
        "sent.", errors=[NOT_ACTIVE]),
    "GET /journey-instances/{instance_id}/timeline": Op(
        "What happened in the instance, in order: every stage change and every step run with its outcome and "
        "the message or ticket it made."),
}
