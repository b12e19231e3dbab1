"""The two labels flagstream flags, in the order every score array uses.

Definitions (kept verbatim in every model card):

- ``propaganda``: content that promotes, glorifies, justifies or supports a violent extremist movement
  or its violence: praise of its fighters and attacks, recruitment and calls to join or fight, threats,
  incitement, the movement's own releases shared approvingly, dehumanising enemies to justify violence.
  Reporting on extremism (news, eyewitness accounts, analysis), criticism of extremists and counter-speech
  are *not* propaganda, even when they quote it.
- ``sectarian``: hatred, contempt or dehumanisation aimed at a religious sect or a religious, ethnic or
  national-origin group as such, or calls for harm to such a group.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = ("propaganda", "sectarian")

DEFINITIONS: dict[str, str] = {
    "propaganda": (
        "Content that promotes, glorifies, justifies or supports a violent extremist movement or its violence: "
        "praise of its fighters and attacks, recruitment and calls to join or fight, threats, incitement, the "
        "movement's own releases shared approvingly, dehumanising enemies to justify violence. Reporting on "
        "extremism (news, eyewitness accounts, analysis), criticism of extremists and counter-speech are not "
        "propaganda, even when they quote it."
    ),
    "sectarian": (
        "Hatred, contempt or dehumanisation aimed at a religious sect or a religious, ethnic or national-origin "
        "group as such, or calls for harm to such a group."
    ),
}
