"""The patient record: demographics, contact points, identifiers and consent history.

* `patients` carries the demographics plus `primary_phone` / `primary_email`, denormalised copies of
  the primary row of `patient_phones` / `patient_emails` (the service keeps them in step), so other
  modules can address a patient without a join.
* `search_name` is a generated column, `lower(prm_unaccent(given_name || ' ' || family_name))`,
  with a trigram GIN index: fuzzy, accent-insensitive name search. `prm_unaccent` is an IMMUTABLE
  wrapper around `unaccent` created by the migration (plain `unaccent()` is only STABLE, so it
  cannot be used in an index or a generated column).
* `patient_name_words` / `patient_name_terms` are a small inverted index of the words of live
  patients' names, kept by a trigger on `patients` (see the migration): every word → the patients
  having it, and every distinct word of an organisation with a trigram index. Name search matches the
  query's words against the (small) dictionary of terms, then finds patients by exact word through a
  btree, so its cost follows the number of matches, not a similarity computed per patient row.
* `consents` is append-only: each change is a new row; the newest row per (patient, channel,
  purpose) is the current state. Contact consent has a channel (sms, whatsapp, email, voice) and a
  purpose (care, reminders, marketing); data-sharing consent has no channel and the purpose
  `ai_processing` or `ehr_export`.
* A merged patient keeps its row with `status = 'merged'` and `merged_into_id` pointing at the
  survivor; soft-deleted patients have `deleted_at` set. Neither is ever returned by a search.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

GENDERS = ("male", "female", "other", "unknown")  # FHIR administrative-gender
STATUSES = ("active", "inactive", "merged", "deceased")
CHANNELS = ("sms", "whatsapp", "email", "voice")
CONTACT_PURPOSES = ("care", "reminders", "marketing")
DATA_SHARING_PURPOSES = ("ai_processing", "ehr_export", "intake")
PURPOSES = CONTACT_PURPOSES + DATA_SHARING_PURPOSES
PHONE_KINDS = ("mobile", "home", "work", "other")
EMAIL_KINDS = ("personal", "work", "other")

SEARCH_NAME_SQL = "lower(prm_unaccent(given_name || ' ' || family_name))"


class Patient(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(one_of("gender", GENDERS), name="gender"),
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(f"preferred_channel IS NULL OR {one_of('preferred_channel', CHANNELS)}",
                        name="preferred_channel"),
        CheckConstraint("(status = 'merged') = (merged_into_id IS NOT NULL)", name="merged_into"),
        CheckConstraint("merged_into_id IS NULL OR merged_into_id <> id", name="not_merged_into_self"),
        Index("ix_patients_search_name_trgm", "search_name", postgresql_using="gin",
              postgresql_ops={"search_name": "gin_trgm_ops"}),
        Index("ix_patients_org_birth_date", "org_id", "birth_date"),
        Index("ix_patients_org_created_at", "org_id", "created_at"),
        Index("ix_patients_org_family_given", "org_id", "family_name", "given_name"),
        Index("ix_patients_merged_into_id", "merged_into_id"),
        Index("ix_patients_tags", "tags", postgresql_using="gin"),
        # The words of the folded name as "<org id>:<word>", and their first 1-3 letters as
        # "<org id>:^<prefix>" (function created by the migration), so a search of several words
        # intersects their patients in the index (patients.search.name_ranking).
        Index("ix_patients_name_search_keys", func.prm_name_search_keys(text("org_id"), text("search_name")),
              postgresql_using="gin"),
    )

    given_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    family_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(String(16), default="unknown", server_default="unknown")
    preferred_language: Mapped[str] = mapped_column(String(35), default="en", server_default="en")  # BCP 47
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA, e.g. "Europe/Madrid"
    # {"line": ["..."], "city": "", "district": "", "state": "", "postal_code": "", "country": "ES"}
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    merged_at: Mapped[datetime | None]
    deceased_date: Mapped[date | None] = mapped_column(Date)
    is_provisional: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    source: Mapped[str | None] = mapped_column(String(32))  # "api", "whatsapp", "sms", "voice", "import"
    primary_phone: Mapped[str | None] = mapped_column(String(20))  # E.164, copy of the primary phone row
    primary_email: Mapped[str | None] = mapped_column(String(320))  # copy of the primary email row
    deleted_at: Mapped[datetime | None]
    search_name: Mapped[str] = mapped_column(Text, Computed(SEARCH_NAME_SQL, persisted=True))

    # Loaded explicitly (selectinload) where needed; never lazily in async code.
    phones: Mapped[list[PatientPhone]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(PatientPhone.is_primary.desc(), PatientPhone.created_at)")
    emails: Mapped[list[PatientEmail]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(PatientEmail.is_primary.desc(), PatientEmail.created_at)")
    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(PatientIdentifier.system, PatientIdentifier.value)")

    @property
    def display_name(self) -> str:
        name = f"{self.given_name or ''} {self.family_name or ''}".strip()
        return name or (self.primary_phone or self.primary_email or "Unknown patient")

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class PatientPhone(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "patient_phones"
    __table_args__ = (
        CheckConstraint(one_of("kind", PHONE_KINDS), name="kind"),
        UniqueConstraint("patient_id", "number", name="uq_patient_phones_patient_number"),
        Index("uq_patient_phones_one_primary", "patient_id", unique=True,
              postgresql_where=text("is_primary")),
        Index("ix_patient_phones_org_number", "org_id", "number"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(20))  # E.164
    kind: Mapped[str] = mapped_column(String(16), default="mobile", server_default="mobile")
    is_primary: Mapped[bool] = mapped_column(default=False, server_default=text("false"))


class PatientEmail(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "patient_emails"
    __table_args__ = (
        CheckConstraint(one_of("kind", EMAIL_KINDS), name="kind"),
        Index("uq_patient_emails_patient_email", "patient_id", func.lower(text("email")), unique=True),
        Index("uq_patient_emails_one_primary", "patient_id", unique=True,
              postgresql_where=text("is_primary")),
        Index("ix_patient_emails_org_email", "org_id", func.lower(text("email"))),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16), default="personal", server_default="personal")
    is_primary: Mapped[bool] = mapped_column(default=False, server_default=text("false"))


class PatientIdentifier(IdMixin, TimestampMixin, OrgMixin, Base):
    """An MRN or an external system's id: unique per (organisation, system, value)."""

    __tablename__ = "patient_identifiers"
    __table_args__ = (
        UniqueConstraint("org_id", "system", "value", name="uq_patient_identifiers_org_system_value"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    system: Mapped[str] = mapped_column(String(255))  # "mrn" or a URI such as "urn:oid:..." / "https://..."
    value: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(100))  # human name of the system, e.g. "Hospital MRN"


class Consent(IdMixin, OrgMixin, Base):
    """One consent decision; rows are only ever added (the newest per key is the current state)."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint(f"channel IS NULL OR {one_of('channel', CHANNELS)}", name="channel"),
        CheckConstraint(one_of("purpose", PURPOSES), name="purpose"),
        CheckConstraint(
            f"(channel IS NULL AND {one_of('purpose', DATA_SHARING_PURPOSES)}) "
            f"OR (channel IS NOT NULL AND {one_of('purpose', CONTACT_PURPOSES)})",
            name="channel_matches_purpose",
        ),
        Index("ix_consents_patient_key_at", "patient_id", "channel", "purpose", "recorded_at"),
        Index("ix_consents_org_recorded_at", "org_id", "recorded_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    channel: Mapped[str | None] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(64))  # "api", "keyword:STOP", "intake_form", "import" ...
    recorded_at: Mapped[datetime] = mapped_column(default=clock.now, server_default=func.now())
    recorded_by_kind: Mapped[str | None] = mapped_column(String(16))  # principal kind
    recorded_by_id: Mapped[uuid.UUID | None]
    note: Mapped[str | None] = mapped_column(String(500))


class PatientNameWord(Base):
    """One word of a live patient's folded name (maintained by a trigger; never written by the ORM)."""

    __tablename__ = "patient_name_words"
    __table_args__ = (
        Index("ix_patient_name_words_patient_id", "patient_id"),
        # A word's patients in ranking order (shorter name, name, id): a one-word search reads only
        # the first page's worth of each matching word (patients.search.name_ranking).
        Index("ix_patient_name_words_ranked", "org_id", "word", func.length(text("sort_key")), "sort_key",
              "patient_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                              primary_key=True)
    word: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"),
                                                  primary_key=True)
    sort_key: Mapped[str] = mapped_column(Text)  # the patient's search_name, for ordering without a join


class PatientNameTerm(Base):
    """A distinct word of some patient's name in an organisation (the dictionary fuzzy search scans)."""

    __tablename__ = "patient_name_terms"
    __table_args__ = (
        Index("ix_patient_name_terms_word_trgm", "word", postgresql_using="gin",
              postgresql_ops={"word": "gin_trgm_ops"}),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                              primary_key=True)
    word: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
