"""The demo's static catalogs in French and Spanish: people's and companies' names, the web
site's pages, chat scripts, sales and service subjects, lead texts and marketing events."""

from __future__ import annotations

import random
import unicodedata

SITE = "https://www.contoso.com"

FIRST = {
    "fr": (
        "Camille", "Léa", "Manon", "Chloé", "Inès", "Sarah", "Julie", "Emma", "Louise", "Claire",
        "Nathalie", "Isabelle", "Sophie", "Thomas", "Nicolas", "Julien", "Pierre", "Antoine",
        "Lucas", "Hugo", "Maxime", "Alexandre", "Olivier", "Laurent", "Mathieu", "François",
        "Éric", "Stéphane",
    ),
    "es": (
        "Lucía", "María", "Paula", "Sofía", "Carmen", "Laura", "Marta", "Ana", "Elena",
        "Cristina", "Isabel", "Pilar", "Alejandro", "Daniel", "Pablo", "David", "Javier",
        "Sergio", "Carlos", "Manuel", "Jorge", "Miguel", "Álvaro", "Diego", "Adrián", "Raúl",
        "Iván", "Fernando",
    ),
}  # fmt: skip
LAST = {
    "fr": (
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
        "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
        "Vincent", "Fournier", "Morel", "Girard", "André", "Lefèvre", "Mercier", "Dupont",
        "Lambert", "Bonnet", "Martinez",
    ),
    "es": (
        "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
        "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
        "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos",
        "Gil", "Ramírez", "Serrano",
    ),
}  # fmt: skip
PERSONAL_DOMAINS = {
    "fr": ("gmail.com", "orange.fr", "free.fr", "laposte.net", "outlook.fr", "hotmail.fr"),
    "es": ("gmail.com", "hotmail.es", "yahoo.es", "outlook.es", "telefonica.net"),
}
COMPANY_PREFIX = {
    "fr": ("Transports", "Boulangeries", "Cabinet", "Laboratoires", "Éditions", "Groupe",
           "Ateliers", "Pharmacie", "Hôtel", "Menuiserie"),
    "es": ("Transportes", "Panaderías", "Despacho", "Laboratorios", "Editorial", "Grupo",
           "Talleres", "Farmacia", "Hotel", "Carpintería"),
}  # fmt: skip
COMPANY_SUFFIX = {"fr": ("SA", "SAS", "SARL", ""), "es": ("SL", "SA", "")}
# Microsoft's fictitious demo companies, so names look familiar to Dynamics 365 users.
FICTIONAL = (
    "Fabrikam",
    "Northwind Traders",
    "Adventure Works",
    "Tailspin Toys",
    "Wide World Importers",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Alpine Ski House",
    "Coho Winery",
    "Fourth Coffee",
    "Trey Research",
)
COUNTRY = {"fr": "France", "es": "España"}
MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
}  # fmt: skip

# Web pages: (path, kind); the kind decides chat rules and forms.
PAGES = {
    "fr": (("", "home"), ("produits/crm-cloud", "product"), ("produits/analytics", "product"),
           ("produits/field-service", "product"), ("tarifs", "pricing"),
           ("blog/ia-relation-client", "blog"), ("blog/rgpd-et-marketing", "blog"),
           ("blog/cas-client-fabrikam", "blog"), ("support", "support"),
           ("support/faq-facturation", "support"), ("evenements", "events"),
           ("contact", "contact"), ("livres-blancs/ia-relation-client", "whitepaper")),
    "es": (("", "home"), ("productos/crm-cloud", "product"), ("productos/analytics", "product"),
           ("productos/field-service", "product"), ("precios", "pricing"),
           ("blog/ia-atencion-cliente", "blog"), ("blog/rgpd-y-marketing", "blog"),
           ("blog/caso-de-exito-fabrikam", "blog"), ("soporte", "support"),
           ("soporte/preguntas-facturacion", "support"), ("eventos", "events"),
           ("contacto", "contact"), ("libros-blancos/ia-atencion-cliente", "whitepaper")),
}  # fmt: skip
# Pages the journeys go to on purpose, by their place in PAGES.
HOME, PRICING, EVENTS_PAGE, CONTACT_PAGE, WHITEPAPER = 0, 4, 10, 11, 12
PAGE_WEIGHTS = (14, 10, 8, 6, 8, 9, 6, 5, 6, 4, 4, 3, 4)
PAGE_CUM = tuple(sum(PAGE_WEIGHTS[: i + 1]) for i in range(len(PAGE_WEIGHTS)))
REFERRERS = {
    "fr": ("https://www.google.fr/", "https://www.google.com/", "https://www.bing.com/",
           "https://www.linkedin.com/", "https://www.facebook.com/", None, None),
    "es": ("https://www.google.es/", "https://www.google.com/", "https://www.bing.com/",
           "https://www.linkedin.com/", "https://www.facebook.com/", None, None),
}  # fmt: skip
DOWNLOADS = {
    "fr": ("https://www.contoso.com/fr/telecharger/brochure-crm-cloud.pdf",
           "https://www.contoso.com/fr/telecharger/grille-tarifaire-2025.pdf",
           "https://www.linkedin.com/company/contoso", "https://www.youtube.com/@contoso"),
    "es": ("https://www.contoso.com/es/descargas/folleto-crm-cloud.pdf",
           "https://www.contoso.com/es/descargas/tarifas-2025.pdf",
           "https://www.linkedin.com/company/contoso", "https://www.youtube.com/@contoso"),
}  # fmt: skip

# Proactive chat: (rule name, trigger message) per page kind and language.
CHAT_RULES = {
    ("pricing", "fr"): ("Page tarifs > 30 s",
                        "Une question sur nos tarifs ? Un conseiller est là."),
    ("pricing", "es"): ("Página de precios > 30 s",
                        "¿Dudas sobre los precios? Un asesor está disponible."),
    ("support", "fr"): ("Support : aide proactive", "Besoin d'aide ? Discutons-en maintenant."),
    ("support", "es"): ("Soporte: ayuda proactiva", "¿Necesita ayuda? Hablemos ahora."),
    ("product", "fr"): ("Fiche produit > 30 s", "Vous hésitez ? Posez-nous vos questions."),
    ("product", "es"): ("Ficha de producto > 30 s", "¿Tiene dudas? Pregúntenos."),
}  # fmt: skip
CHAT_SCRIPT = {
    "fr": (("agent", "Bonjour, je suis {agent}. Puis-je vous aider ?"),
           ("customer", "Oui, quelle différence entre les offres Standard et Premium ?"),
           ("agent", "Premium inclut l'analytique en temps réel et le support 24/7."),
           ("customer", "Et pour 25 utilisateurs, quel serait le tarif ?"),
           ("agent", "Je vous envoie un devis détaillé par e-mail dans la journée."),
           ("customer", "Parfait, merci beaucoup.")),
    "es": (("agent", "Hola, soy {agent}. ¿En qué puedo ayudarle?"),
           ("customer", "Sí, ¿qué diferencia hay entre el plan Estándar y el Premium?"),
           ("agent", "Premium incluye analítica en tiempo real y soporte 24/7."),
           ("customer", "¿Y cuál sería el precio para 25 usuarios?"),
           ("agent", "Le envío hoy mismo un presupuesto detallado por correo."),
           ("customer", "Perfecto, muchas gracias.")),
}  # fmt: skip
AGENTS = {
    "fr": ("Amélie", "Karim", "Sébastien", "Aurélie"),
    "es": ("Nuria", "Jordi", "Beatriz", "Óscar"),
}

CALL_SUBJECTS = {
    "fr": ("Suivi de la proposition commerciale", "Prise de contact après le salon",
           "Qualification du besoin", "Renouvellement du contrat", "Point d'avancement projet"),
    "es": ("Seguimiento de la propuesta comercial", "Primer contacto tras la feria",
           "Cualificación de la necesidad", "Renovación del contrato",
           "Revisión del avance del proyecto"),
}  # fmt: skip
APPOINTMENTS = {
    "fr": ("Démonstration Contoso CRM Cloud", "Atelier de cadrage", "Revue trimestrielle"),
    "es": ("Demostración de Contoso CRM Cloud", "Taller de definición", "Revisión trimestral"),
}
TASKS = {
    "fr": ("Envoyer le devis", "Relancer après la démo", "Préparer la proposition"),
    "es": ("Enviar el presupuesto", "Hacer seguimiento tras la demo", "Preparar la propuesta"),
}
CASES = {
    "fr": (("Impossible de se connecter au portail", "Mot de passe réinitialisé"),
           ("Erreur lors de l'export des données", "Correctif appliqué"),
           ("Question sur la facturation", "Avoir émis sur la prochaine facture"),
           ("Demande de formation", "Session de formation planifiée"),
           ("Synchronisation Outlook en échec", "Connecteur reconfiguré")),
    "es": (("No puedo iniciar sesión en el portal", "Contraseña restablecida"),
           ("Error al exportar los datos", "Corrección aplicada"),
           ("Consulta sobre la facturación", "Abono emitido en la próxima factura"),
           ("Solicitud de formación", "Sesión de formación programada"),
           ("Falla la sincronización con Outlook", "Conector reconfigurado")),
}  # fmt: skip
CASE_ORIGINS = ("phone", "email", "web", "social", "other")
CASE_ORIGIN_CUM = (35, 65, 88, 93, 100)
LEAD_TOPICS = {
    "fr": ("Contoso CRM Cloud, 50 licences", "Projet Analytics",
           "Field Service pour 20 techniciens", "Migration depuis un CRM existant",
           "Portail client"),
    "es": ("Contoso CRM Cloud, 50 licencias", "Proyecto de Analytics",
           "Field Service para 20 técnicos", "Migración desde un CRM existente",
           "Portal de clientes"),
}  # fmt: skip
DISQUALIFY = {
    "fr": ("Pas de budget cette année", "A choisi un concurrent", "Projet annulé",
           "Coordonnées invalides"),
    "es": ("Sin presupuesto este año", "Eligió a un competidor", "Proyecto cancelado",
           "Datos de contacto no válidos"),
}  # fmt: skip
LOST = {
    "fr": ("Prix trop élevé", "A choisi un concurrent", "Projet reporté"),
    "es": ("Precio demasiado alto", "Eligió a un competidor", "Proyecto aplazado"),
}  # fmt: skip
STAGES = ("develop", "propose", "close")
RETURN = {
    "fr": ("Pas encore prêt : à relancer dans six mois", "Attend la fin de son contrat actuel"),
    "es": ("Aún no está listo: volver a contactar en seis meses",
           "Espera a que termine su contrato actual"),
}  # fmt: skip

# Marketing events: (kind, French name, Spanish name, sessions as (French, Spanish)).
EVENT_KINDS = (
    ("summit", "Contoso Summit Paris", "Contoso Summit Madrid",
     (("Keynote d'ouverture", "Keynote de apertura"),
      ("Atelier IA générative", "Taller de IA generativa"),
      ("Table ronde clients", "Mesa redonda de clientes"))),
    ("webinar", "Webinaire : bien démarrer avec Analytics",
     "Webinar: primeros pasos con Analytics",
     (("Démonstration en direct", "Demostración en directo"),)),
    ("regional", "Rencontres Contoso Lyon", "Encuentro Contoso Barcelona",
     (("Retours d'expérience", "Experiencias de clientes"),
      ("Atelier tableaux de bord", "Taller de paneles"))),
    ("webinar", "Webinaire : RGPD et consentement marketing",
     "Webinar: RGPD y consentimiento de marketing",
     (("Questions-réponses avec nos experts", "Preguntas y respuestas con expertos"),)),
)  # fmt: skip


def language(rng: random.Random) -> str:
    """French or Spanish, in the audience's proportions."""
    return "fr" if rng.random() < 0.55 else "es"


def slug(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: names made fit for addresses and ids."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join("".join(ch for ch in folded.lower() if ch.isalnum() or ch == " ").split())
