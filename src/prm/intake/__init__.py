"""Clinical intake: sessions from web forms, WhatsApp, voice calls and staff; typed records upserted by
the client's item id; questionnaires; linking a patient with consent; submit, summary, statistics."""
