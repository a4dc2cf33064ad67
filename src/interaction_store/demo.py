"""Reproducible demo data for ``istore demo-data``: a year of French and Spanish customer life,
simulated event by event (accounts, contacts, leads, visitors) and streamed in time order."""

from __future__ import annotations

import heapq
import math
import random
import unicodedata
import uuid
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from interaction_store.codec import decode_document, encode
from interaction_store.events import CURRENT_VERSIONS, InteractionEvent

__all__ = ["estimate_events", "generate", "write_jsonl"]

# The simulation clock counts integer milliseconds from the start of the window.
SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
YEAR = 365 * DAY

SITE = "https://www.contoso.com"
_PROGRESS_EVERY = 5000
_WRITE_CHUNK = 512

Action = Callable[..., InteractionEvent | None]
Doc = dict[str, Any]

# --------------------------------------------------------------------------- catalogs

_FIRST = {
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
_LAST = {
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
_PERSONAL_DOMAINS = {
    "fr": ("gmail.com", "orange.fr", "free.fr", "laposte.net", "outlook.fr", "hotmail.fr"),
    "es": ("gmail.com", "hotmail.es", "yahoo.es", "outlook.es", "telefonica.net"),
}
_COMPANY_PREFIX = {
    "fr": ("Transports", "Boulangeries", "Cabinet", "Laboratoires", "Éditions", "Groupe",
           "Ateliers", "Pharmacie", "Hôtel", "Menuiserie"),
    "es": ("Transportes", "Panaderías", "Despacho", "Laboratorios", "Editorial", "Grupo",
           "Talleres", "Farmacia", "Hotel", "Carpintería"),
}  # fmt: skip
_COMPANY_SUFFIX = {"fr": ("SA", "SAS", "SARL", ""), "es": ("SL", "SA", "")}
# Microsoft's fictitious demo companies, so names look familiar to Dynamics 365 users.
_FICTIONAL = (
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
_COUNTRY = {"fr": "France", "es": "España"}
_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
}  # fmt: skip

# Subscription lists: (id, French name, Spanish name); a contact's lists are a bit mask.
_LISTS = (
    ("list-newsletter", "Lettre d'information mensuelle", "Boletín mensual"),
    ("list-offers", "Offres et promotions", "Ofertas y promociones"),
    ("list-events", "Invitations aux événements", "Invitaciones a eventos"),
    ("list-product-news", "Nouveautés produit", "Novedades de producto"),
)
NEWSLETTER, OFFERS, EVENTS, PRODUCT_NEWS = 1, 2, 4, 8


@dataclass(frozen=True, slots=True)
class _Mail:
    """An email template; subject and preview may hold {first}, {month}, {event}, {date}, {case}."""

    campaign: str
    journey: str
    list_bit: int  # 0: not sent to a subscription list
    legal: str
    source: str
    fr: tuple[str, str]
    es: tuple[str, str]
    landing: tuple[str, str]  # French and Spanish page paths the links point to

    @property
    def list_id(self) -> str | None:
        return _LISTS[self.list_bit.bit_length() - 1][0] if self.list_bit else None


_WELCOME = (
    _Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("Bienvenue chez Contoso, {first} !",
           "Découvrez tout ce que votre espace client vous permet de faire."),
          ("¡Bienvenido a Contoso, {first}!",
           "Descubra todo lo que puede hacer desde su área de cliente."),
          ("", "")),
    _Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("3 astuces pour bien démarrer", "Gagnez du temps dès la première semaine."),
          ("3 consejos para empezar", "Ahorre tiempo desde la primera semana."),
          ("blog/bien-demarrer", "blog/primeros-pasos")),
    _Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("Votre avis compte, {first}", "Dites-nous en 2 minutes ce que vous attendez de nous."),
          ("Su opinión nos importa, {first}", "Cuéntenos en 2 minutos qué espera de nosotros."),
          ("enquete", "encuesta")),
)  # fmt: skip
_PROMOS = (
    _Mail("cmp-spring-analytics", "jrn-promo", OFFERS, "commercial", "journeys",
          ("-20 % sur Contoso Analytics jusqu'à dimanche",
           "Profitez de l'offre de printemps réservée à nos clients."),
          ("-20 % en Contoso Analytics hasta el domingo",
           "Aproveche la oferta de primavera reservada a nuestros clientes."),
          ("produits/analytics", "productos/analytics")),
    _Mail("cmp-whitepaper-ia", "jrn-nurture", 0, "commercial", "journeys",
          ("Livre blanc : l'IA au service de la relation client",
           "Téléchargez gratuitement notre guide de 24 pages."),
          ("Libro blanco: la IA al servicio de la atención al cliente",
           "Descargue gratis nuestra guía de 24 páginas."),
          ("livres-blancs/ia-relation-client", "libros-blancos/ia-atencion-cliente")),
    _Mail("cmp-trial-field-service", "jrn-nurture", 0, "commercial", "journeys",
          ("Votre essai gratuit de Contoso Field Service",
           "Activez 30 jours d'essai, sans engagement."),
          ("Su prueba gratuita de Contoso Field Service",
           "Active 30 días de prueba, sin compromiso."),
          ("produits/field-service", "productos/field-service")),
    _Mail("cmp-case-fabrikam", "jrn-nurture", 0, "commercial", "journeys",
          ("Cas client : Fabrikam a réduit ses délais de 30 %",
           "Comment une PME lyonnaise a transformé son service client."),
          ("Caso de éxito: Fabrikam redujo sus plazos un 30 %",
           "Cómo una pyme de Valencia transformó su atención al cliente."),
          ("blog/cas-client-fabrikam", "blog/caso-de-exito-fabrikam")),
    _Mail("cmp-year-end", "jrn-promo", OFFERS, "commercial", "journeys",
          ("Dernière chance : l'offre de fin d'année expire ce soir",
           "Jusqu'à 3 mois offerts sur votre abonnement annuel."),
          ("Última oportunidad: la oferta de fin de año termina hoy",
           "Hasta 3 meses gratis en su suscripción anual."),
          ("tarifs", "precios")),
    _Mail("cmp-realtime-dashboards", "jrn-product", PRODUCT_NEWS, "commercial", "journeys",
          ("Nouveau : des tableaux de bord en temps réel",
           "Suivez vos indicateurs à la minute, sans configuration."),
          ("Novedad: paneles en tiempo real",
           "Siga sus indicadores al minuto, sin configuración."),
          ("produits/crm-cloud", "productos/crm-cloud")),
)  # fmt: skip
_NEWSLETTER = _Mail(
    "cmp-newsletter", "jrn-newsletter", NEWSLETTER, "commercial", "outbound-marketing",
    ("La lettre Contoso — {month}",
     "Nouveautés produit, témoignages clients et événements du mois."),
    ("Boletín Contoso — {month}", "Novedades de producto, casos de éxito y eventos del mes."),
    ("blog", "blog"),
)  # fmt: skip
_TRANSACTIONAL = (
    _Mail("cmp-billing", "jrn-billing", 0, "transactional", "journeys",
          ("Votre facture de {month} est disponible", "Consultez-la dans votre espace client."),
          ("Su factura de {month} está disponible", "Consúltela en su área de cliente."),
          ("espace-client/factures", "area-cliente/facturas")),
    _Mail("cmp-order", "jrn-order", 0, "transactional", "journeys",
          ("Confirmation de votre commande", "Merci pour votre achat : voici le récapitulatif."),
          ("Confirmación de su pedido", "Gracias por su compra: este es el resumen."),
          ("espace-client/commandes", "area-cliente/pedidos")),
    _Mail("cmp-password", "jrn-account", 0, "transactional", "journeys",
          ("Réinitialisation de votre mot de passe", "Ce lien est valable 30 minutes."),
          ("Restablecimiento de su contraseña", "Este enlace es válido durante 30 minutos."),
          ("connexion", "acceso")),
)  # fmt: skip
_INVITE = _Mail(
    "cmp-events", "jrn-events", EVENTS, "commercial", "journeys",
    ("Invitation : {event}", "Rejoignez-nous le {date} — places limitées."),
    ("Invitación: {event}", "Acompáñenos el {date}: plazas limitadas."),
    ("evenements", "eventos"),
)  # fmt: skip
_CONFIRM = _Mail(
    "cmp-events", "jrn-event-registration", 0, "transactional", "journeys",
    ("Confirmation de votre inscription : {event}", "Votre billet et les informations pratiques."),
    ("Confirmación de su inscripción: {event}", "Su entrada y la información práctica."),
    ("evenements", "eventos"),
)  # fmt: skip
_CASE_ACK = _Mail(
    "cmp-service", "jrn-case", 0, "transactional", "customer-service",
    ("Nous avons bien reçu votre demande {case}", "Un conseiller vous répond sous 24 heures."),
    ("Hemos recibido su solicitud {case}", "Un agente le responderá en 24 horas."),
    ("support", "soporte"),
)  # fmt: skip
_CASE_DONE = _Mail(
    "cmp-service", "jrn-case", 0, "transactional", "customer-service",
    ("Votre demande {case} est résolue", "Dites-nous si la solution vous convient."),
    ("Su solicitud {case} se ha resuelto", "Díganos si la solución le resulta útil."),
    ("support", "soporte"),
)  # fmt: skip

_SMS = {
    "fr": (
        ("cmp-spring-analytics", "Contoso : -20 % sur Analytics jusqu'à dimanche ! "
         "https://cntso.co/a20 STOP au 36180", "https://cntso.co/a20"),
        ("cmp-appointment", "Contoso : votre rendez-vous est confirmé pour jeudi 10h. "
         "Répondez STOP pour ne plus recevoir de SMS.", None),
        ("cmp-webinar", "Rappel : votre webinaire Contoso commence demain à 11h. "
         "https://cntso.co/web STOP au 36180", "https://cntso.co/web"),
    ),
    "es": (
        ("cmp-spring-analytics", "Contoso: -20 % en Analytics hasta el domingo. "
         "https://cntso.co/a20 Responda ALTO para darse de baja", "https://cntso.co/a20"),
        ("cmp-appointment", "Contoso: su cita está confirmada para el jueves a las 10:00. "
         "Responda ALTO para no recibir más SMS.", None),
        ("cmp-webinar", "Recordatorio: su webinar de Contoso empieza mañana a las 11:00. "
         "https://cntso.co/web Responda ALTO", "https://cntso.co/web"),
    ),
}  # fmt: skip
_SMS_REPLIES = {
    "fr": ("Merci !", "OK", "Oui, c'est noté", "C'est à quelle heure ?"),
    "es": ("¡Gracias!", "Vale", "Sí, de acuerdo", "¿A qué hora es?"),
}
_PUSH = {
    "fr": (("Votre rapport mensuel est prêt", "Consultez vos indicateurs du mois dans l'appli."),
           ("Offre flash", "-30 % sur les modules complémentaires, aujourd'hui seulement."),
           ("Nouveau message", "Votre conseiller vous a répondu."),
           ("Mise à jour disponible", "Découvrez les nouveautés de la version 4.2.")),
    "es": (("Su informe mensual está listo", "Consulte sus indicadores del mes en la app."),
           ("Oferta flash", "-30 % en los módulos complementarios, solo hoy."),
           ("Nuevo mensaje", "Su asesor le ha respondido."),
           ("Actualización disponible", "Descubra las novedades de la versión 4.2.")),
}  # fmt: skip

# Web pages: (path, kind); the kind decides chat rules and forms.
_PAGES = {
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
_PAGE_WEIGHTS = (14, 10, 8, 6, 8, 9, 6, 5, 6, 4, 4, 3, 4)
_PAGE_CUM = tuple(sum(_PAGE_WEIGHTS[: i + 1]) for i in range(len(_PAGE_WEIGHTS)))
_REFERRERS = {
    "fr": ("https://www.google.fr/", "https://www.google.com/", "https://www.bing.com/",
           "https://www.linkedin.com/", "https://www.facebook.com/", None, None),
    "es": ("https://www.google.es/", "https://www.google.com/", "https://www.bing.com/",
           "https://www.linkedin.com/", "https://www.facebook.com/", None, None),
}  # fmt: skip
_DOWNLOADS = {
    "fr": ("https://www.contoso.com/fr/telecharger/brochure-crm-cloud.pdf",
           "https://www.contoso.com/fr/telecharger/grille-tarifaire-2025.pdf",
           "https://www.linkedin.com/company/contoso", "https://www.youtube.com/@contoso"),
    "es": ("https://www.contoso.com/es/descargas/folleto-crm-cloud.pdf",
           "https://www.contoso.com/es/descargas/tarifas-2025.pdf",
           "https://www.linkedin.com/company/contoso", "https://www.youtube.com/@contoso"),
}  # fmt: skip

# Proactive chat: (rule name, trigger message) per page kind and language.
_CHAT_RULES = {
    ("pricing", "fr"): ("Page tarifs > 30 s",
                        "Une question sur nos tarifs ? Un conseiller est là."),
    ("pricing", "es"): ("Página de precios > 30 s",
                        "¿Dudas sobre los precios? Un asesor está disponible."),
    ("support", "fr"): ("Support : aide proactive", "Besoin d'aide ? Discutons-en maintenant."),
    ("support", "es"): ("Soporte: ayuda proactiva", "¿Necesita ayuda? Hablemos ahora."),
    ("product", "fr"): ("Fiche produit > 30 s", "Vous hésitez ? Posez-nous vos questions."),
    ("product", "es"): ("Ficha de producto > 30 s", "¿Tiene dudas? Pregúntenos."),
}  # fmt: skip
_CHAT_SCRIPT = {
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
_AGENTS = {
    "fr": ("Amélie", "Karim", "Sébastien", "Aurélie"),
    "es": ("Nuria", "Jordi", "Beatriz", "Óscar"),
}

_CALL_SUBJECTS = {
    "fr": ("Suivi de la proposition commerciale", "Prise de contact après le salon",
           "Qualification du besoin", "Renouvellement du contrat", "Point d'avancement projet"),
    "es": ("Seguimiento de la propuesta comercial", "Primer contacto tras la feria",
           "Cualificación de la necesidad", "Renovación del contrato",
           "Revisión del avance del proyecto"),
}  # fmt: skip
_APPOINTMENTS = {
    "fr": ("Démonstration Contoso CRM Cloud", "Atelier de cadrage", "Revue trimestrielle"),
    "es": ("Demostración de Contoso CRM Cloud", "Taller de definición", "Revisión trimestral"),
}
_TASKS = {
    "fr": ("Envoyer le devis", "Relancer après la démo", "Préparer la proposition"),
    "es": ("Enviar el presupuesto", "Hacer seguimiento tras la demo", "Preparar la propuesta"),
}
_CASES = {
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
_CASE_ORIGINS = ("phone", "email", "web", "social", "other")
_CASE_ORIGIN_CUM = (35, 65, 88, 93, 100)
_LEAD_TOPICS = {
    "fr": ("Contoso CRM Cloud, 50 licences", "Projet Analytics",
           "Field Service pour 20 techniciens", "Migration depuis un CRM existant",
           "Portail client"),
    "es": ("Contoso CRM Cloud, 50 licencias", "Proyecto de Analytics",
           "Field Service para 20 técnicos", "Migración desde un CRM existente",
           "Portal de clientes"),
}  # fmt: skip
_DISQUALIFY = {
    "fr": ("Pas de budget cette année", "A choisi un concurrent", "Projet annulé",
           "Coordonnées invalides"),
    "es": ("Sin presupuesto este año", "Eligió a un competidor", "Proyecto cancelado",
           "Datos de contacto no válidos"),
}  # fmt: skip
_RETURN = {
    "fr": ("Pas encore prêt : à relancer dans six mois", "Attend la fin de son contrat actuel"),
    "es": ("Aún no está listo: volver a contactar en seis meses",
           "Espera a que termine su contrato actual"),
}  # fmt: skip
_SOFT_BOUNCE = ("mailbox full", "temporary failure: try again later", "message too large")
_HARD_BOUNCE = ("550 5.1.1 user unknown", "550 5.1.2 domain not found", "mailbox disabled")

# Marketing events: (kind, French name, Spanish name, sessions as (French, Spanish)).
_EVENT_KINDS = (
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


@dataclass(frozen=True, slots=True)
class _MarketingEvent:
    at: int  # start, in simulation milliseconds
    invite_at: int
    ref: str
    name: str
    date_text: str
    in_person: bool
    sessions: tuple[tuple[str, str], ...]  # (session id, name)


# --------------------------------------------------------------------------- the actors


class _Account:
    __slots__ = ("domain", "id", "lang", "name")

    def __init__(self, id_: uuid.UUID, name: str, domain: str, lang: str) -> None:
        self.id = id_
        self.name = name
        self.domain = domain
        self.lang = lang


class _Contact:
    """A contact and the state the simulation needs to respect its consent."""

    __slots__ = (
        "account",
        "allow_email",
        "anon",
        "bad_email",
        "bulk",
        "child",
        "email",
        "email_out",
        "engagement",
        "first",
        "gone",
        "hard_bounced",
        "id",
        "lang",
        "last",
        "leads",
        "linked",
        "lists",
        "phone",
        "prefill",
        "push_ok",
        "rate",
        "sms_ok",
        "subject",
        "table",
    )

    def __init__(self, id_: uuid.UUID, lang: str, first: str, last: str, anon: str) -> None:
        self.id = id_
        self.lang = lang
        self.first = first
        self.last = last
        self.anon = anon
        self.email: str | None = None
        self.phone: str | None = None
        self.account: _Account | None = None
        self.child = False
        self.engagement = 1.0
        self.allow_email = True
        self.bulk = False
        self.email_out = False
        self.lists = 0
        self.sms_ok = False
        self.push_ok = False
        self.bad_email = False
        self.hard_bounced = False
        self.prefill = False
        self.linked = False  # web visits are anonymous until the cookie is linked
        self.gone = False  # merged into another contact
        self.leads = 0
        self.rate = 0.0
        self.table: _Table | None = None
        self.subject: Doc = {"contact_id": id_}

    def set_account(self, account: _Account | None) -> None:
        self.account = account
        self.subject = (
            {"contact_id": self.id}
            if account is None
            else {"contact_id": self.id, "account_id": account.id}
        )

    # Effects of consent events, applied when the event is emitted.
    def forbid_bulk(self) -> None:
        self.bulk = False

    def allow_bulk(self) -> None:
        self.bulk = True

    def opt_out_address(self) -> None:
        self.email_out = True

    def opt_in_address(self) -> None:
        self.email_out = False

    def join_newsletter(self) -> None:
        self.lists |= NEWSLETTER

    def email_consent(self, opted_in: bool) -> Doc:
        """The payload of a contact-point consent for this contact's email address."""
        return {
            "channel": "email",
            "contact_point": self.email,
            "purpose": "commercial",
            "status": "opted_in" if opted_in else "opted_out",
        }

    def commercial_block(self, list_bit: int) -> str | None:
        """Why a commercial email may not go out now, or None when it may."""
        if self.child:
            return "contact is a child: no marketing email"
        if not self.bulk:
            return "bulk email not allowed"
        if self.email_out:
            return "commercial email consent opted out for this address"
        if list_bit and not self.lists & list_bit:
            return "not subscribed to the list"
        return None


@dataclass(frozen=True, slots=True)
class _Table:
    """What a kind of contact does between campaigns: activities and their yearly rates."""

    acts: tuple[Action, ...]
    cum: tuple[float, ...]
    total: float  # events of activity per year, before the contact's engagement factor


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch == " ").strip()


def _slug(text: str) -> str:
    return "-".join(_ascii(text).split())


# --------------------------------------------------------------------------- the simulation


class _Sim:
    """Actions on a heap of (time, sequence); popping in order streams sorted events."""

    def __init__(self, contacts: int, seed: int, end: datetime, days: int) -> None:
        self.rng = random.Random(seed)
        self.n = contacts
        self.t0 = end - timedelta(days=days)
        self.end = days * DAY
        # Daytime is judged on the UTC clock (the audience is in France and Spain, UTC+1/+2).
        midnight = self.t0.replace(hour=0, minute=0, second=0, microsecond=0)
        self.day_offset = (self.t0 - midnight) // timedelta(milliseconds=1)
        self.heap: list[tuple[int, int, Action, tuple[Any, ...]]] = []
        self.seq = 0
        self.now = 0
        # Contacts: 40 % exist at go-live (a CRM import over the first week), the rest arrive
        # evenly over the window, so the log reads like a system's first year.
        self.n_import = max(1, math.ceil(contacts * 0.4))
        self.n_growth = contacts - self.n_import
        self.import_span = max(HOUR, min(7 * DAY, self.end // 10))
        self.growth_span = max(1, int(self.end * 0.97) - self.import_span)
        self.merges_left = contacts // 500
        # Spread over the growth phase: about 4x the merges wanted are eligible, the cap holds.
        self.merge_p = 8.0 * self.merges_left / max(1, self.n_growth)
        self.pool: deque[_Contact] = deque(maxlen=64)  # recent adults: guardians, duplicates
        self.accounts: deque[_Account] = deque(maxlen=32)  # recent accounts for job changes
        self.tables: dict[tuple[bool, bool, bool, bool], _Table] = {}
        self.newsletters = self._newsletter_calendar()
        self.events = {lang: self._event_calendar(lang) for lang in ("fr", "es")}
        self.invite_times = {lang: [e.invite_at for e in evs] for lang, evs in self.events.items()}

    # ----------------------------------------------------------------- machinery

    def run(self) -> Iterator[InteractionEvent]:
        self.at(0, self._spawn, 0)
        n_anon = max(1, _share(self.n, 0.3))
        self.at(self._spread(0, n_anon), self._anonymous_visitor, 0, n_anon)
        n_orphans = max(1, _share(self.n, 0.04))
        self.at(self._spread(0, n_orphans), self._orphan_lead, 0, n_orphans)
        heap = self.heap
        pop = heapq.heappop
        while heap:
            t, _, action, args = pop(heap)
            self.now = t
            event = action(t, *args)
            if event is not None:
                yield event

    def at(self, t: int, action: Action, *args: Any) -> None:
        """Schedule an action; anything at or after the end of the window never happens."""
        t = max(t, self.now)
        if t < self.end:
            heapq.heappush(self.heap, (t, self.seq, action, args))
            self.seq += 1

    def later(
        self,
        t: int,
        etype: str,
        source: str,
        subject: Doc,
        payload: Doc,
        corr: Doc | None = None,
        contact: _Contact | None = None,
        effect: Callable[[], None] | None = None,
    ) -> None:
        """Schedule an event; its effect on the simulated state happens when it is emitted."""
        self.at(t, self._emit, etype, source, subject, payload, corr, contact, effect)

    def _emit(
        self,
        t: int,
        etype: str,
        source: str,
        subject: Doc,
        payload: Doc,
        corr: Doc | None,
        contact: _Contact | None,
        effect: Callable[[], None] | None,
    ) -> InteractionEvent | None:
        if contact is not None and contact.gone:
            return None  # a merged-away duplicate produces nothing more
        event = self.event(t, etype, source, subject, payload, corr)
        if effect is not None:
            effect()
        return event

    def event(
        self, t: int, etype: str, source: str, subject: Doc, payload: Doc, corr: Doc | None = None
    ) -> InteractionEvent:
        # Through the codec's own validation, so every demo event is one the store accepts.
        doc: Doc = {
            "event_id": self.uid(),
            "type": etype,
            "schema_version": CURRENT_VERSIONS[etype],
            "occurred_at": self.t0 + timedelta(milliseconds=t),
            "source": source,
            "subject": subject,
            "payload": payload,
        }
        if corr is not None:
            doc["correlation"] = corr
        return decode_document(doc)

    def uid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def when(self, t: int) -> datetime:
        return self.t0 + timedelta(milliseconds=t)

    def daytime(self, t: int) -> int:
        """Move a human action that falls at night to the next morning."""
        hour = ((t + self.day_offset) // HOUR) % 24
        if hour < 7:
            return t + (7 - hour) * HOUR + self.rng.randrange(2 * HOUR)
        if hour >= 22:
            return t + (31 - hour) * HOUR + self.rng.randrange(2 * HOUR)
        return t

    def delay(self, median: int, sigma: float, low: int, high: int) -> int:
        return min(high, max(low, int(median * self.rng.lognormvariate(0, sigma))))

    def _spread(self, k: int, count: int) -> int:
        """Stratified instants: the k-th of count things, evenly over the window, in order."""
        return int(self.end * 0.98 * (k + self.rng.random()) / count)

    def _slot(self, j: int) -> int:
        if j < self.n_import:
            return int(self.import_span * (j + self.rng.random()) / self.n_import)
        k = j - self.n_import
        return self.import_span + int(self.growth_span * (k + self.rng.random()) / self.n_growth)

    # ----------------------------------------------------------------- calendars

    def _newsletter_calendar(self) -> list[int]:
        # The monthly newsletter leaves on the first Tuesday of each month at 08:00 UTC.
        out: list[int] = []
        month = self.t0.replace(day=1, hour=8, minute=0, second=0, microsecond=0)
        while True:
            first_tuesday = month + timedelta(days=(1 - month.weekday()) % 7)
            t = (first_tuesday - self.t0) // timedelta(milliseconds=1)
            if t >= self.end:
                return out
            if t >= 0:
                out.append(t)
            month = (month + timedelta(days=32)).replace(day=1)

    def _event_calendar(self, lang: str) -> list[_MarketingEvent]:
        out: list[_MarketingEvent] = []
        t = self.rng.randrange(5 * DAY, 25 * DAY)
        i = self.rng.randrange(len(_EVENT_KINDS))
        while t < self.end + 30 * DAY:
            kind, fr_name, es_name, sessions = _EVENT_KINDS[i % len(_EVENT_KINDS)]
            in_person = kind != "webinar"
            start_hour = 9 if in_person else 11
            day = (t + self.day_offset) // DAY * DAY - self.day_offset
            at = day + start_hour * HOUR
            when = self.when(at)
            name = fr_name if lang == "fr" else es_name
            if kind == "summit":
                name = f"{name} {when.year}"
            month = _MONTHS[lang][when.month - 1]
            date_text = (
                f"{when.day} {month} {when.year}"
                if lang == "fr"
                else f"{when.day} de {month} de {when.year}"
            )
            ref = f"evt-{when:%Y%m%d}-{_slug(name)}"
            sess = tuple(
                (f"{ref}-s{k + 1}", fr if lang == "fr" else es)
                for k, (fr, es) in enumerate(sessions)
            )
            lead = (21 if in_person else 10) * DAY
            out.append(_MarketingEvent(at, at - lead, ref, name, date_text, in_person, sess))
            t += self.rng.randrange(35 * DAY, 60 * DAY)
            i += 1
        return out

    # ----------------------------------------------------------------- people

    def _new_contact(self, lang: str, account: _Account | None) -> _Contact:
        rng = self.rng
        c = _Contact(
            self.uid(),
            lang,
            rng.choice(_FIRST[lang]),
            rng.choice(_LAST[lang]),
            f"{rng.getrandbits(96):024x}",
        )
        first, last = _slug(c.first), _slug(c.last)
        if account is not None:
            c.email = f"{first}.{last}@{account.domain}"
        elif rng.random() < 0.95:
            c.email = f"{first}.{last}{rng.randrange(1, 100)}@{rng.choice(_PERSONAL_DOMAINS[lang])}"
        if rng.random() < 0.7:
            c.phone = f"+{33 if lang == 'fr' else 34}{rng.choice('67')}{rng.randrange(10**8):08d}"
        c.engagement = min(3.0, max(0.15, rng.lognormvariate(0, 0.55)))
        c.bad_email = rng.random() < 0.03  # an address that no longer exists: it hard-bounces
        c.set_account(account)
        return c

    def _new_account(self, lang: str) -> _Account:
        rng = self.rng
        if rng.random() < 0.25:
            name = f"{rng.choice(_FICTIONAL)} {_COUNTRY[lang]}"
        else:
            suffix = rng.choice(_COMPANY_SUFFIX[lang])
            name = f"{rng.choice(_COMPANY_PREFIX[lang])} {rng.choice(_LAST[lang])} {suffix}"
            name = name.strip()
        tld = "fr" if lang == "fr" else "es"
        account = _Account(self.uid(), name, f"{_slug(name)}.{tld}", lang)
        self.accounts.append(account)
        return account

    def _initial_consent(self, c: _Contact, bulk_p: float) -> None:
        rng = self.rng
        c.allow_email = c.email is not None and rng.random() < 0.97
        c.bulk = not c.child and c.allow_email and rng.random() < bulk_p
        c.prefill = not c.child and rng.random() < 0.6
        if c.bulk:
            c.lists = NEWSLETTER if rng.random() < 0.7 else 0
            for bit, p in ((OFFERS, 0.45), (EVENTS, 0.45), (PRODUCT_NEWS, 0.3)):
                if rng.random() < p:
                    c.lists |= bit
        c.sms_ok = not c.child and c.phone is not None and rng.random() < 0.55
        c.push_ok = rng.random() < (0.15 if c.child else 0.3)

    def _table(self, c: _Contact) -> _Table:
        key = (c.child, c.account is not None, c.sms_ok, c.push_ok)
        table = self.tables.get(key)
        if table is None:
            rates: list[tuple[Action, float]] = [(self._act_web, 13.0)]
            if c.child:
                rates.append((self._act_transactional, 0.5))
            else:
                rates += [
                    (self._act_promo, 16.0),
                    (self._act_transactional, 3.0),
                    (self._act_sales, 3.0 if c.account else 0.6),
                    (self._act_service, 0.8),
                    (self._act_preferences, 0.35),
                    (self._act_update, 0.06),
                    (self._act_interest, 0.25),
                ]
                if c.account:
                    rates.append((self._act_leave_account, 0.05))
            if c.sms_ok:
                rates.append((self._act_sms, 6.0))
            if c.push_ok:
                rates.append((self._act_push, 10.0))
            cum: list[float] = []
            total = 0.0
            for _, rate in rates:
                total += rate
                cum.append(total)
            table = _Table(tuple(a for a, _ in rates), tuple(cum), total)
            self.tables[key] = table
        return table

    def _spawn(self, t: int, j: int) -> None:
        """Create the next group of contacts (an account's people, or one person)."""
        rng = self.rng
        remaining = self.n - j
        r = rng.random()
        lang = "fr" if rng.random() < 0.55 else "es"
        importing = j < self.n_import
        size = 1
        if r < 0.3 and remaining >= 2:
            size = min(remaining, rng.choice((2, 2, 3, 3, 4, 5, 6, 8)))
            account = self._new_account(lang)
            members = [self._new_contact(lang, account) for _ in range(size)]
            # The contract needs a contact or lead in every subject: an account is created with
            # its primary contact (the first one), whose contact.created follows.
            self.later(t, "account.created", "sales", members[0].subject, {"name": account.name})
            if rng.random() < 0.18:
                lead_at = t + rng.randrange(5 * DAY, 150 * DAY)
                self.at(self.daytime(lead_at), self._account_lead, account)
            tm = t + rng.randrange(10 * SEC, 2 * MIN)
            for c in members:
                self.at(min(tm, self.end - 1), self._create, c, "import" if importing else "sales")
                tm += rng.randrange(20 * SEC, 10 * MIN)
                self.pool.append(c)
        elif r < 0.34 and self.pool:
            self._spawn_child(t)
        elif (
            self.merges_left
            and self.pool
            and not importing
            and t < self.end * 0.75
            and rng.random() < self.merge_p
        ):
            self._spawn_duplicate(t)
        else:
            c = self._new_contact(lang, None)
            self.pool.append(c)
            if importing:
                self.at(t, self._create, c, "import")
            else:
                origin = rng.choices(("web", "sales", "service", "event"), (50, 25, 15, 10))[0]
                if origin == "web":
                    self._web_prehistory(t, c)
                else:
                    self.at(t, self._create, c, origin)
        if j + size < self.n:
            self.at(max(t, self._slot(j + size)), self._spawn, j + size)

    def _spawn_child(self, t: int) -> None:
        guardian = self.rng.choice(self.pool)
        c = self._new_contact(guardian.lang, None)
        c.child = True
        c.last = guardian.last
        if self.rng.random() < 0.6:
            c.email = None  # many children have no address of their own
        self.at(t, self._create, c, "child", guardian)

    def _spawn_duplicate(self, t: int) -> None:
        # The same person signs up again with a personal address; sales merges them weeks later.
        original = self.rng.choice(self.pool)
        dup = self._new_contact(original.lang, None)
        dup.first, dup.last = original.first, original.last
        dup.email = (
            f"{_slug(dup.first)}{_slug(dup.last)}{self.rng.randrange(100)}"
            f"@{self.rng.choice(_PERSONAL_DOMAINS[dup.lang])}"
        )
        self.merges_left -= 1
        self._web_prehistory(t, dup)
        merge_at = self.daytime(t + self.rng.randrange(14 * DAY, 60 * DAY))
        self.at(merge_at, self._merge, original, dup)

    def _web_prehistory(self, t: int, c: _Contact) -> None:
        """A visitor browses anonymously, then submits a form: the contact is born from it."""
        rng = self.rng
        room = self.end - 1 - t
        visits = rng.randrange(1, 4)
        lead_in = min(int(room * 0.8), rng.randrange(HOUR, 20 * DAY))
        for k in range(visits):
            self.at(t + lead_in * k // visits, self._visit, c.anon, c.lang, None, None, None)
        self.at(t + lead_in, self._web_signup, c)

    def _web_signup(self, t: int, c: _Contact) -> InteractionEvent | None:
        rng = self.rng
        path, _ = _PAGES[c.lang][12] if rng.random() < 0.5 else _PAGES[c.lang][0]
        form = "form-whitepaper-ia" if path else "form-newsletter"
        anon = {"anonymous_id": c.anon}
        submit = t + rng.randrange(40 * SEC, 4 * MIN)
        on_page = round((submit - t) / SEC + rng.random() * 20, 1)
        self.later(
            t,
            "web.page_viewed",
            "web-tracking",
            anon,
            {"url": f"{SITE}/{c.lang}/{path}", "seconds_on_page": on_page},
        )
        self.later(
            t + 2 * SEC,
            "form.viewed",
            "journeys",
            anon,
            {"form_id": form, "page_url": f"{SITE}/{c.lang}/{path}"},
        )
        self._initial_consent(c, 0.65)
        self.later(
            submit,
            "form.submitted",
            "journeys",
            anon,
            {
                "form_id": form,
                "fields": self._form_fields(c),
                "consent_checkboxes": {
                    "allow_bulk_email": c.bulk,
                    "list-newsletter": bool(c.lists & NEWSLETTER),
                },
                "prefilled": False,
            },
        )
        self.at(submit + SEC, self._create, c, "web")
        return None

    def _form_fields(self, c: _Contact) -> dict[str, str]:
        fields = {"firstname": c.first, "lastname": c.last}
        if c.email:
            fields["email"] = c.email
        if c.account is not None:
            fields["company"] = c.account.name
        return fields

    def _details(self, c: _Contact, guardian: _Contact | None) -> Doc:
        details: Doc = {"first_name": c.first, "last_name": c.last}
        if c.email:
            details["email"] = c.email
        if c.phone and not c.child:
            details["phone"] = c.phone
        if c.child:
            details["is_child"] = True
        if guardian is not None:
            details["guardian_contact_id"] = guardian.id
        return details

    def _create(
        self, t: int, c: _Contact, origin: str, guardian: _Contact | None = None
    ) -> InteractionEvent:
        rng = self.rng
        source = {
            "import": "sales",
            "sales": "sales",
            "service": "customer-service",
            "web": "journeys",
            "event": "journeys",
            "child": "journeys",
        }[origin]
        if origin != "web":  # web signups took their consent from the form's checkboxes
            self._initial_consent(c, 0.8 if origin in ("import", "event") else 0.55)
        created = self.event(t, "contact.created", source, c.subject, self._details(c, guardian))
        s = t + SEC
        if c.account is not None:
            self.later(s, "contact.joined_account", source, c.subject, {"account_id": c.account.id})
            s += SEC
        if origin == "web":
            self.at(s, self._link, c)
        self._consent_events(s + SEC, c, source)
        # Its life from now on: campaigns it may receive and what it does by itself.
        c.table = self._table(c)
        c.rate = c.table.total * (0.4 + 0.6 * c.engagement) / YEAR
        # Nothing is sent before the consent events above are out (a minute later at the least).
        settled = t + MIN
        self.at(self.daytime(settled + int(rng.expovariate(c.rate))), self._tick, c)
        k = bisect_left(self.newsletters, settled)
        if k < len(self.newsletters):
            self.at(self.newsletters[k] + rng.randrange(2 * HOUR), self._newsletter, c, k)
        k = bisect_left(self.invite_times[c.lang], settled)
        if k < len(self.invite_times[c.lang]):
            invite = self.events[c.lang][k].invite_at + rng.randrange(3 * HOUR)
            self.at(invite, self._invite, c, k)
        if c.bulk and c.email:
            self.at(t + rng.randrange(5 * MIN, 30 * MIN), self._send_email, c, _WELCOME[0], None)
            for mail, after in ((_WELCOME[1], 3 * DAY), (_WELCOME[2], 10 * DAY)):
                at = self.daytime(t + after + rng.randrange(-2 * HOUR, 2 * HOUR))
                self.at(at, self._send_email, c, mail, None)
        if origin == "service":
            self.at(t + rng.randrange(MIN, 15 * MIN), self._act_service, c)
        elif origin == "sales":
            self.at(self.daytime(t + rng.randrange(HOUR, 3 * DAY)), self._act_sales, c)
        elif origin == "event":
            k = bisect_left(self.invite_times[c.lang], t)
            if k < len(self.events[c.lang]):
                self.at(t + 5 * SEC, self._register, c, self.events[c.lang][k])
        return created

    def _consent_events(self, t: int, c: _Contact, source: str) -> None:
        subj = c.subject
        prefs: Doc = {
            "allow_email": c.allow_email,
            "allow_bulk_email": c.bulk,
            "allow_prefill": c.prefill,
        }
        if self.rng.random() < 0.7:
            prefs["track_email"] = self.rng.random() < 0.8
        self.later(t, "consent.preferences_changed", source, subj, prefs)
        if c.child:
            level = "consent"  # given by the guardian
        elif c.bulk:
            level = "profiling" if self.rng.random() < 0.25 else "marketing"
        else:
            level = "transactional" if c.allow_email else "consent"
        self.later(t + 10, "consent.level_changed", source, subj, {"level": level})
        for i, (list_id, fr, es) in enumerate(_LISTS):
            if c.lists & (1 << i):
                self.later(
                    t + 20 + i,
                    "consent.subscription_joined",
                    source,
                    subj,
                    {"list_id": list_id, "list_name": fr if c.lang == "fr" else es},
                )
        if c.email and not c.child:
            self.later(
                t + 30, "consent.contact_point_changed", source, subj, c.email_consent(c.bulk)
            )
        if c.sms_ok:
            self.later(
                t + 40,
                "consent.contact_point_changed",
                source,
                subj,
                {
                    "channel": "sms",
                    "contact_point": c.phone,
                    "purpose": "commercial",
                    "status": "opted_in",
                },
            )
        if c.push_ok:
            self.later(
                t + 50,
                "consent.contact_point_changed",
                source,
                subj,
                {
                    "channel": "push",
                    "contact_point": f"device:{c.anon[:16]}",
                    "purpose": "commercial",
                    "status": "opted_in",
                },
            )

    def _link(self, t: int, c: _Contact) -> InteractionEvent | None:
        """The visitor's cookie is tied to the contact (once: later triggers find it known)."""
        if c.linked or c.gone:
            return None
        c.linked = True
        return self.event(
            t,
            "identity.linked",
            "web-tracking",
            c.subject,
            {"anonymous_id": c.anon, "contact_id": c.id},
        )

    def _tick(self, t: int, c: _Contact) -> InteractionEvent | None:
        """The contact's next spontaneous activity (Poisson, one pending tick per contact)."""
        if c.gone or c.table is None:
            return None
        table = c.table
        act = table.acts[bisect_left(table.cum, self.rng.random() * table.total)]
        self.at(self.daytime(t + int(self.rng.expovariate(c.rate)) + MIN), self._tick, c)
        result: InteractionEvent | None = act(t, c)
        return result

    # ----------------------------------------------------------------- email

    def _send_email(
        self, t: int, c: _Contact, mail: _Mail, ctx: dict[str, str] | None
    ) -> InteractionEvent | None:
        """Send if consent allows (else maybe record the block), and schedule what follows."""
        rng = self.rng
        if c.gone:
            return None
        block: str | None = None
        if c.email is None:
            return None
        if not c.allow_email:
            block = "contact does not allow email"
        elif c.hard_bounced:
            block = "address hard-bounced earlier"
        elif mail.legal == "commercial":
            if mail.list_bit and not c.lists & mail.list_bit:
                return None  # not in the list's audience at all
            block = c.commercial_block(mail.list_bit)
        campaign = mail.campaign
        if mail is _NEWSLETTER:
            campaign = f"{campaign}-{self.when(t):%Y-%m}"
        corr = {"journey_id": mail.journey, "campaign_id": campaign, "message_id": str(self.uid())}
        if block is not None:
            if rng.random() < 0.2:
                return self.event(
                    t, "email.blocked", mail.source, c.subject, {"reason": block}, corr
                )
            return None
        values = {
            "first": c.first,
            "month": _MONTHS[c.lang][self.when(t).month - 1],
            "event": "",
            "date": "",
            "case": "",
        }
        if ctx:
            values.update(ctx)
        subject, preview = mail.fr if c.lang == "fr" else mail.es
        payload: Doc = {
            "subject": subject.format_map(values),
            "preview_text": preview.format_map(values),
            "to_address": c.email,
            "legal_designation": mail.legal,
        }
        if mail.list_bit:
            payload["list_id"] = mail.list_id
        sent = self.event(t, "email.sent", mail.source, c.subject, payload, corr)
        self._email_outcome(t, c, mail, corr)
        return sent

    def _email_outcome(self, t: int, c: _Contact, mail: _Mail, corr: Doc) -> None:
        rng = self.rng
        src, subj = mail.source, c.subject
        if c.bad_email or rng.random() < 0.0008:

            def bounced() -> None:
                c.hard_bounced = True

            self.later(
                t + rng.randrange(2 * SEC, 40 * SEC),
                "email.bounced",
                src,
                subj,
                {"bounce_type": "hard", "reason": rng.choice(_HARD_BOUNCE)},
                corr,
                c,
                bounced,
            )
            return
        if rng.random() < 0.015:
            self.later(
                t + rng.randrange(5 * SEC, 10 * MIN),
                "email.bounced",
                src,
                subj,
                {"bounce_type": "soft", "reason": rng.choice(_SOFT_BOUNCE)},
                corr,
                c,
            )
            return
        self.later(t + rng.randrange(SEC, 30 * SEC), "email.delivered", src, subj, {}, corr, c)
        commercial = mail.legal == "commercial"
        if commercial and rng.random() < 0.0015:

            def complained() -> None:
                c.bulk = False  # a complaint stops marketing email to this contact

            self.later(
                self.daytime(t + self.delay(3 * HOUR, 1.2, MIN, 5 * DAY)),
                "email.spam_reported",
                src,
                subj,
                {},
                corr,
                c,
                complained,
            )
            return
        p_open = min(0.9, (0.2 if commercial else 0.5) * c.engagement)
        if rng.random() >= p_open:
            return
        opened = self.daytime(t + self.delay(2 * HOUR, 1.6, 20 * SEC, 12 * DAY))
        self.later(opened, "email.opened", src, subj, {}, corr, c)
        if rng.random() < 0.15:
            again = self.daytime(opened + self.delay(6 * HOUR, 1.0, 5 * MIN, 7 * DAY))
            self.later(again, "email.opened", src, subj, {}, corr, c)
        if rng.random() < min(0.6, 0.1 + 0.08 * c.engagement):
            clicked = opened + rng.randrange(5 * SEC, 2 * MIN)
            path = mail.landing[0] if c.lang == "fr" else mail.landing[1]
            url = f"{SITE}/{c.lang}/{path}?utm_source=email&utm_campaign={corr['campaign_id']}"
            self.later(clicked, "email.clicked", src, subj, {"url": url}, corr, c)
            if not c.linked:
                # The tracked link carries the contact: the browser's cookie is now known.
                self.at(clicked + 300, self._link, c)
            self.at(clicked + SEC, self._visit, c.anon, c.lang, c, url, None)
        elif commercial and rng.random() < 0.03:
            self._unsubscribe(opened + rng.randrange(10 * SEC, 3 * MIN), c, mail, corr)

    def _unsubscribe(self, t: int, c: _Contact, mail: _Mail, corr: Doc) -> None:
        list_id = mail.list_id
        bit = mail.list_bit

        def leave() -> None:
            if bit:
                c.lists &= ~bit
            else:
                c.bulk = False

        payload: Doc = {"via": "link"}
        if list_id:
            payload["list_id"] = list_id
        self.later(t, "email.unsubscribed", mail.source, c.subject, payload, corr, c, leave)
        # The subscription centre records the consent change itself, a moment later.
        if list_id:
            self.later(
                t + 800,
                "consent.subscription_left",
                "journeys",
                c.subject,
                {"list_id": list_id},
                None,
                c,
                leave,
            )
        else:
            self.later(
                t + 800,
                "consent.preferences_changed",
                "journeys",
                c.subject,
                {"allow_bulk_email": False},
                None,
                c,
                leave,
            )

    def _act_promo(self, t: int, c: _Contact) -> InteractionEvent | None:
        return self._send_email(t, c, self.rng.choice(_PROMOS), None)

    def _act_transactional(self, t: int, c: _Contact) -> InteractionEvent | None:
        return self._send_email(t, c, self.rng.choice(_TRANSACTIONAL), None)

    def _newsletter(self, t: int, c: _Contact, k: int) -> InteractionEvent | None:
        if c.gone:
            return None
        if k + 1 < len(self.newsletters):
            self.at(
                self.newsletters[k + 1] + self.rng.randrange(2 * HOUR), self._newsletter, c, k + 1
            )
        return self._send_email(t, c, _NEWSLETTER, None)

    # ----------------------------------------------------------------- sms and push

    def _act_sms(self, t: int, c: _Contact) -> InteractionEvent | None:
        rng = self.rng
        if not c.sms_ok or c.phone is None:
            return None  # replied STOP earlier, or never opted in
        campaign, text, link = rng.choice(_SMS[c.lang])
        corr = {"journey_id": "jrn-sms", "campaign_id": campaign, "message_id": str(self.uid())}
        sent = self.event(
            t, "sms.sent", "journeys", c.subject, {"text": text, "to_number": c.phone}, corr
        )
        subj = c.subject
        if rng.random() < 0.04:
            reason = rng.choice(("unreachable handset", "carrier rejected", "invalid number"))
            self.later(
                t + rng.randrange(5 * SEC, 5 * MIN),
                "sms.failed",
                "journeys",
                subj,
                {"reason": reason},
                corr,
                c,
            )
            return sent
        delivered = t + rng.randrange(2 * SEC, 40 * SEC)
        self.later(delivered, "sms.delivered", "journeys", subj, {}, corr, c)
        read = self.daytime(delivered + self.delay(10 * MIN, 1.5, 10 * SEC, 2 * DAY))
        if link is not None and rng.random() < 0.06 * c.engagement:
            self.later(read, "sms.clicked", "journeys", subj, {"url": link}, corr, c)
        elif rng.random() < 0.05:
            if rng.random() < 0.45:
                keyword = "ALTO" if c.lang == "es" and rng.random() < 0.5 else "STOP"
                text = keyword if rng.random() < 0.7 else keyword.capitalize()

                def stopped() -> None:
                    c.sms_ok = False

                self.later(
                    read,
                    "sms.replied",
                    "journeys",
                    subj,
                    {"text": text, "keyword": keyword},
                    corr,
                    c,
                    stopped,
                )
                self.later(
                    read + SEC,
                    "consent.contact_point_changed",
                    "journeys",
                    subj,
                    {
                        "channel": "sms",
                        "contact_point": c.phone,
                        "purpose": "commercial",
                        "status": "opted_out",
                    },
                    None,
                    c,
                    stopped,
                )
            else:
                self.later(
                    read,
                    "sms.replied",
                    "journeys",
                    subj,
                    {"text": rng.choice(_SMS_REPLIES[c.lang])},
                    corr,
                    c,
                )
        return sent

    def _act_push(self, t: int, c: _Contact) -> InteractionEvent | None:
        rng = self.rng
        if not c.push_ok:
            return None
        title, body = rng.choice(_PUSH[c.lang])
        corr = {
            "journey_id": "jrn-app",
            "campaign_id": f"cmp-push-{_slug(title)[:24]}",
            "message_id": str(self.uid()),
        }
        sent = self.event(
            t, "push.sent", "journeys", c.subject, {"title": title, "body": body}, corr
        )
        if rng.random() < 0.93:
            delivered = t + rng.randrange(SEC, 20 * SEC)
            self.later(delivered, "push.delivered", "journeys", c.subject, {}, corr, c)
            if rng.random() < 0.12 * c.engagement:
                opened = self.daytime(delivered + self.delay(30 * MIN, 1.5, 5 * SEC, 3 * DAY))
                self.later(opened, "push.opened", "journeys", c.subject, {}, corr, c)
        return sent

    # ----------------------------------------------------------------- web, forms, chat

    def _anonymous_visitor(self, t: int, k: int, count: int) -> None:
        """Someone who never becomes a contact: a few anonymous sessions."""
        rng = self.rng
        anon = f"{rng.getrandbits(96):024x}"
        lang = "fr" if rng.random() < 0.55 else "es"
        tv = t
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            self.at(self.daytime(tv), self._visit, anon, lang, None, None, None)
            tv += self.delay(10 * DAY, 1.0, HOUR, 90 * DAY)
        if k + 1 < count:
            self.at(self._spread(k + 1, count), self._anonymous_visitor, k + 1, count)

    def _act_web(self, t: int, c: _Contact) -> None:
        self._visit(t, c.anon, c.lang, c, None, None)

    def _visit(
        self,
        t: int,
        anon: str,
        lang: str,
        c: _Contact | None,
        entry: str | None,
        referrer: str | None,
    ) -> None:
        """A browsing session: page views, a tracked link or two, maybe a form or a chat."""
        rng = self.rng
        known = c is not None and c.linked and not c.gone
        subj = c.subject if known and c is not None else {"anonymous_id": anon}
        pages = _PAGES[lang]
        n = 1 + min(7, int(rng.expovariate(0.6)))
        ref = rng.choice(_REFERRERS[lang]) if entry is None else referrer
        url = entry
        kind = "landing"
        tp = t
        for i in range(n):
            while url is None or (i and url == ref):  # each step shows a new page
                path, kind = pages[bisect_left(_PAGE_CUM, rng.random() * _PAGE_CUM[-1])]
                url = f"{SITE}/{lang}/{path}"
            secs = round(min(900.0, max(2.0, rng.lognormvariate(3.4, 0.9))), 1)
            page: Doc = {"url": url, "seconds_on_page": secs}
            if ref is not None:
                page["referrer"] = ref
            self.later(tp, "web.page_viewed", "web-tracking", subj, page, None, c)
            if kind in ("pricing", "support", "product") and secs >= 30 and rng.random() < 0.22:
                self._chat(tp + 30 * SEC, subj, lang, kind, url, c if known else None)
            elif kind == "whitepaper":
                self._gated_form(tp + rng.randrange(3 * SEC, 20 * SEC), subj, url, c, known)
            elif rng.random() < 0.07:
                self.later(
                    tp + int(secs * 800),
                    "web.link_clicked",
                    "web-tracking",
                    subj,
                    {"url": rng.choice(_DOWNLOADS[lang]), "page_url": url},
                    None,
                    c,
                )
            ref = url
            tp += int(secs * SEC) + rng.randrange(300, 4 * SEC)

    def _gated_form(self, t: int, subj: Doc, url: str, c: _Contact | None, known: bool) -> None:
        rng = self.rng
        form = "form-whitepaper-ia"
        self.later(t, "form.viewed", "journeys", subj, {"form_id": form, "page_url": url}, None, c)
        if c is None or c.gone or rng.random() > 0.4:
            return
        submitted = t + rng.randrange(20 * SEC, 3 * MIN)
        self.later(
            submitted,
            "form.submitted",
            "journeys",
            subj,
            {
                "form_id": form,
                "fields": self._form_fields(c),
                "consent_checkboxes": {"allow_bulk_email": c.bulk},
                "prefilled": known and c.prefill,
            },
            None,
            c,
        )
        if not known:
            self.at(submitted + 500, self._link, c)

    def _chat(self, t: int, subj: Doc, lang: str, kind: str, url: str, c: _Contact | None) -> None:
        """A proactive invitation: accepted, closed, or left to expire after one minute."""
        rng = self.rng
        rule, trigger = _CHAT_RULES[(kind, lang)]
        src = "omnichannel"
        self.later(
            t,
            "chat.invitation_shown",
            src,
            subj,
            {
                "rule_name": rule,
                "page_url": url,
                "seconds_on_page": round(30 + rng.random() * 5, 1),
                "trigger_message": trigger,
            },
            None,
            c,
        )
        r = rng.random()
        if r < 0.45:
            # The widget closes it by itself: the one-minute timer cannot be configured.
            self.later(
                t + 60 * SEC, "chat.invitation_expired", src, subj, {"seconds_shown": 60.0}, None, c
            )
            return
        if r < 0.75:
            self.later(
                t + rng.randrange(2 * SEC, 55 * SEC),
                "chat.invitation_declined",
                src,
                subj,
                {"rule_name": rule},
                None,
                c,
            )
            return
        ta = t + rng.randrange(3 * SEC, 55 * SEC)
        self.later(ta, "chat.invitation_accepted", src, subj, {"rule_name": rule}, None, c)
        conv = f"conv-{rng.getrandbits(64):016x}"
        agent = rng.choice(_AGENTS[lang])
        ts = ta + rng.randrange(5 * SEC, 40 * SEC)
        self.later(
            ts,
            "chat.conversation_started",
            src,
            subj,
            {
                "conversation_id": conv,
                "agent_id": f"agent-{_slug(agent)}",
                "proactive": True,
            },
            None,
            c,
        )
        tm = ts
        for sender, text in _CHAT_SCRIPT[lang][: rng.choice((2, 3, 4, 5, 6))]:
            tm += rng.randrange(8 * SEC, 70 * SEC)
            self.later(
                tm,
                "chat.message",
                src,
                subj,
                {
                    "conversation_id": conv,
                    "sender": sender,
                    "text": text.format(agent=agent),
                },
                None,
                c,
            )
        end = tm + rng.randrange(10 * SEC, 60 * SEC)
        self.later(
            end,
            "chat.conversation_ended",
            src,
            subj,
            {"conversation_id": conv, "duration_seconds": (end - ts) / SEC},
            None,
            c,
        )
        if c is not None and rng.random() < 0.15:
            self.at(end + SEC, self._open_case, c, "chat")

    def _act_interest(self, t: int, c: _Contact) -> None:
        """The contact asks sales to call back: a contact-us form becomes a lead."""
        rng = self.rng
        if c.leads >= 2:
            return
        c.leads += 1
        pages = _PAGES[c.lang]
        known = c.linked
        subj = c.subject if known else {"anonymous_id": c.anon}
        pricing = f"{SITE}/{c.lang}/{pages[4][0]}"
        contact_url = f"{SITE}/{c.lang}/{pages[11][0]}"
        secs = round(40 + rng.random() * 200, 1)
        self.later(
            t,
            "web.page_viewed",
            "web-tracking",
            subj,
            {"url": pricing, "seconds_on_page": secs},
            None,
            c,
        )
        tc = t + int(secs * SEC) + 2 * SEC
        self.later(
            tc,
            "web.page_viewed",
            "web-tracking",
            subj,
            {"url": contact_url, "referrer": pricing, "seconds_on_page": 95.0},
            None,
            c,
        )
        self.later(
            tc + SEC,
            "form.viewed",
            "journeys",
            subj,
            {"form_id": "form-contact-sales", "page_url": contact_url},
            None,
            c,
        )
        topic = rng.choice(_LEAD_TOPICS[c.lang])
        fields = self._form_fields(c) | {"topic": topic}
        if c.phone:
            fields["phone"] = c.phone
        submitted = tc + rng.randrange(40 * SEC, 3 * MIN)
        self.later(
            submitted,
            "form.submitted",
            "journeys",
            subj,
            {
                "form_id": "form-contact-sales",
                "fields": fields,
                "consent_checkboxes": {"allow_bulk_email": c.bulk},
                "prefilled": known and c.prefill,
            },
            None,
            c,
        )
        if not known:
            self.at(submitted + 500, self._link, c)
        lead_id = self.uid()
        lead_subj = {"lead_id": lead_id, **c.subject}
        self.later(
            submitted + 2 * SEC,
            "lead.created",
            "journeys",
            lead_subj,
            {"topic": topic, "parent_contact_id": c.id},
            None,
            c,
        )
        self._lead_flow(submitted + 2 * SEC, lead_subj, c.lang)

    # ----------------------------------------------------------------- leads

    def _account_lead(self, t: int, account: _Account) -> None:
        # Account-based marketing: a lead on the whole company, scored from all its contacts.
        topic = self.rng.choice(_LEAD_TOPICS[account.lang])
        lead_subj = {"lead_id": self.uid(), "account_id": account.id}
        self.later(
            t, "lead.created", "sales", lead_subj, {"topic": topic, "parent_account_id": account.id}
        )
        self._lead_flow(t, lead_subj, account.lang)

    def _orphan_lead(self, t: int, k: int, count: int) -> None:
        """A business card from a trade show: a lead with no parent contact or account."""
        lang = "fr" if self.rng.random() < 0.55 else "es"
        t = self.daytime(t)
        lead_subj = {"lead_id": self.uid()}
        self.later(
            t, "lead.created", "sales", lead_subj, {"topic": self.rng.choice(_LEAD_TOPICS[lang])}
        )
        self._lead_flow(t, lead_subj, lang)
        if k + 1 < count:
            self.at(self._spread(k + 1, count), self._orphan_lead, k + 1, count)

    def _lead_flow(self, t: int, lead_subj: Doc, lang: str) -> None:
        rng = self.rng
        call = self.daytime(t + rng.randrange(2 * HOUR, 3 * DAY))
        self.later(
            call,
            "activity.phone_call",
            "sales",
            lead_subj,
            {
                "direction": "outbound",
                "subject": _CALL_SUBJECTS[lang][2],
                "duration_seconds": float(self.delay(6 * MIN, 0.7, 30 * SEC, HOUR) // SEC),
            },
        )
        decided = self.daytime(call + rng.randrange(5 * DAY, 45 * DAY))
        r = rng.random()
        if r < 0.35:
            self.later(
                decided,
                "lead.qualified",
                "sales",
                lead_subj,
                {"opportunity_id": f"OPP-{rng.randrange(10**5):05d}"},
            )
        elif r < 0.65:
            self.later(
                decided,
                "lead.disqualified",
                "sales",
                lead_subj,
                {"reason": rng.choice(_DISQUALIFY[lang])},
            )
        elif r < 0.85:
            self.later(
                decided,
                "lead.returned_to_marketing",
                "sales",
                lead_subj,
                {"reason": rng.choice(_RETURN[lang])},
            )

    # ----------------------------------------------------------------- sales and service

    def _act_sales(self, t: int, c: _Contact) -> None:
        rng = self.rng
        r = rng.random()
        lang = c.lang
        if r < 0.6:
            self.later(
                t,
                "activity.phone_call",
                "sales",
                c.subject,
                {
                    "direction": "outbound" if rng.random() < 0.75 else "inbound",
                    "subject": rng.choice(_CALL_SUBJECTS[lang]),
                    "duration_seconds": float(self.delay(5 * MIN, 0.8, 20 * SEC, HOUR) // SEC),
                },
                None,
                c,
            )
        elif r < 0.75:
            day = (t + self.day_offset) // DAY * DAY - self.day_offset
            starts = day + rng.randrange(1, 15) * DAY + rng.randrange(8, 17) * HOUR
            ends = starts + rng.choice((30, 45, 60, 90)) * MIN
            self.later(
                t,
                "activity.appointment",
                "sales",
                c.subject,
                {
                    "subject": rng.choice(_APPOINTMENTS[lang]),
                    "starts_at": self.when(starts),
                    "ends_at": self.when(ends),
                },
                None,
                c,
            )
        else:
            self.later(
                t,
                "activity.task",
                "sales",
                c.subject,
                {
                    "subject": rng.choice(_TASKS[lang]),
                    "due_at": self.when(t + rng.randrange(1, 11) * DAY),
                },
                None,
                c,
            )

    def _act_service(self, t: int, c: _Contact) -> None:
        rng = self.rng
        origin = _CASE_ORIGINS[bisect_left(_CASE_ORIGIN_CUM, rng.random() * 100)]
        self._open_case(t, c, origin)

    def _open_case(self, t: int, c: _Contact, origin: str) -> None:
        rng = self.rng
        if c.gone:
            return
        case_id = f"CAS-{rng.randrange(10**5):05d}-{rng.getrandbits(24):06X}"
        title, resolution = rng.choice(_CASES[c.lang])
        priority = rng.choices(("low", "normal", "high"), (30, 55, 15))[0]
        src = "customer-service"
        if origin == "phone":
            self.later(
                t,
                "activity.phone_call",
                src,
                c.subject,
                {
                    "direction": "inbound",
                    "subject": title,
                    "duration_seconds": float(self.delay(7 * MIN, 0.7, MIN, HOUR) // SEC),
                },
                None,
                c,
            )
        self.later(
            t + 2 * SEC,
            "activity.case_opened",
            src,
            c.subject,
            {
                "case_id": case_id,
                "title": title,
                "priority": priority,
                "origin": origin,
            },
            None,
            c,
        )
        ctx = {"case": case_id}
        self.at(t + rng.randrange(MIN, 10 * MIN), self._send_email, c, _CASE_ACK, ctx)
        if rng.random() < 0.9:
            median = {"high": 4 * HOUR, "normal": DAY, "low": 3 * DAY}[priority]
            done = self.daytime(t + self.delay(median, 1.0, 20 * MIN, 30 * DAY))
            self.later(
                done,
                "activity.case_resolved",
                src,
                c.subject,
                {"case_id": case_id, "resolution": resolution},
                None,
                c,
            )
            self.at(done + 2 * MIN, self._send_email, c, _CASE_DONE, ctx)

    # ----------------------------------------------------------------- marketing events

    def _invite(self, t: int, c: _Contact, k: int) -> InteractionEvent | None:
        rng = self.rng
        if c.gone:
            return None
        cal = self.events[c.lang]
        if k + 1 < len(cal):
            self.at(cal[k + 1].invite_at + rng.randrange(3 * HOUR), self._invite, c, k + 1)
        ev = cal[k]
        sent = self._send_email(t, c, _INVITE, {"event": ev.name, "date": ev.date_text})
        p = 0.05 + 0.06 * c.engagement if sent is not None else 0.01
        if rng.random() < p:
            reg = self.daytime(t + self.delay(2 * DAY, 1.0, HOUR, 15 * DAY))
            if reg < ev.at - HOUR:
                self.at(reg, self._register, c, ev)
        return sent

    def _register(self, t: int, c: _Contact, ev: _MarketingEvent) -> None:
        rng = self.rng
        if c.gone:
            return
        lang = c.lang
        known = c.linked
        subj = c.subject if known else {"anonymous_id": c.anon}
        url = f"{SITE}/{lang}/{_PAGES[lang][10][0]}/{ev.ref.split('-', 2)[2]}"
        self.later(
            t,
            "web.page_viewed",
            "web-tracking",
            subj,
            {"url": url, "seconds_on_page": round(20 + rng.random() * 120, 1)},
            None,
            c,
        )
        self.later(
            t + 3 * SEC,
            "form.viewed",
            "journeys",
            subj,
            {"form_id": "form-event-registration", "page_url": url},
            None,
            c,
        )
        submitted = t + rng.randrange(30 * SEC, 3 * MIN)
        self.later(
            submitted,
            "form.submitted",
            "journeys",
            subj,
            {
                "form_id": "form-event-registration",
                "fields": self._form_fields(c),
                "consent_checkboxes": {"list-events": bool(c.lists & EVENTS)},
                "prefilled": known and c.prefill,
            },
            None,
            c,
        )
        if not known:
            self.at(submitted + 500, self._link, c)
        ref = {"event_ref": ev.ref, "event_name": ev.name}
        corr = {"campaign_id": ev.ref}
        self.later(submitted + SEC, "event.registered", "journeys", c.subject, ref, corr, c)
        self.at(
            submitted + MIN, self._send_email, c, _CONFIRM, {"event": ev.name, "date": ev.date_text}
        )
        if rng.random() < 0.1:
            cancel = self.daytime(submitted + rng.randrange(HOUR, max(2 * HOUR, ev.at - t)))
            if cancel < ev.at:
                self.later(
                    cancel, "event.registration_cancelled", "journeys", c.subject, ref, corr, c
                )
                return
        if ev.in_person:
            if rng.random() < 0.3:
                return  # registered, never came
            self.later(
                ev.at - rng.randrange(5 * MIN, 45 * MIN),
                "event.checked_in",
                "journeys",
                c.subject,
                ref,
                corr,
                c,
            )
        for k, (session_id, session_name) in enumerate(ev.sessions):
            if rng.random() < (0.75 if ev.in_person else 0.55):
                self.later(
                    ev.at + k * 75 * MIN + rng.randrange(5 * MIN),
                    "event.session_attended",
                    "journeys",
                    c.subject,
                    {**ref, "session_id": session_id, "session_name": session_name},
                    corr,
                    c,
                )

    # ----------------------------------------------------------------- consent and profile

    def _act_preferences(self, t: int, c: _Contact) -> None:
        """A visit to the subscription centre: a list joined or left, or bulk email toggled."""
        rng = self.rng
        if c.email is None or c.hard_bounced:
            return
        lang = c.lang
        url = f"{SITE}/{lang}/{'preferences' if lang == 'fr' else 'preferencias'}"
        subj = c.subject
        self.later(
            t,
            "web.page_viewed",
            "web-tracking",
            subj,
            {"url": url, "seconds_on_page": round(15 + rng.random() * 60, 1)},
            None,
            c,
        )
        self.later(
            t + SEC,
            "form.viewed",
            "journeys",
            subj,
            {"form_id": "form-subscription-center", "page_url": url},
            None,
            c,
        )
        ts = t + rng.randrange(10 * SEC, 90 * SEC)
        tc = ts + 700
        r = rng.random()
        changes: list[tuple[str, Doc, Callable[[], None] | None]] = []
        bulk_after = c.bulk
        # Each consent event carries its own part of the state change, applied when emitted, so
        # the simulated state always equals what a reader of the log would fold.
        if c.bulk and c.lists and r < 0.35:
            i = rng.choice([i for i in range(len(_LISTS)) if c.lists & (1 << i)])

            def left(bit: int = 1 << i) -> None:
                c.lists &= ~bit

            changes.append(("consent.subscription_left", {"list_id": _LISTS[i][0]}, left))
        elif c.bulk and r < 0.55 and c.lists != 15:
            i = rng.choice([i for i in range(len(_LISTS)) if not c.lists & (1 << i)])

            def joined(bit: int = 1 << i) -> None:
                c.lists |= bit

            name = _LISTS[i][1] if lang == "fr" else _LISTS[i][2]
            changes.append(
                (
                    "consent.subscription_joined",
                    {"list_id": _LISTS[i][0], "list_name": name},
                    joined,
                )
            )
        elif c.bulk and r < 0.85:
            bulk_after = False
            changes += [
                ("consent.preferences_changed", {"allow_bulk_email": False}, c.forbid_bulk),
                ("consent.level_changed", {"level": "transactional"}, None),
                ("consent.contact_point_changed", c.email_consent(False), c.opt_out_address),
            ]
        elif not c.bulk and not c.child and c.allow_email and r < 0.6:
            bulk_after = True
            newsletter = _LISTS[0][1] if lang == "fr" else _LISTS[0][2]
            changes += [
                ("consent.preferences_changed", {"allow_bulk_email": True}, c.allow_bulk),
                ("consent.level_changed", {"level": "marketing"}, None),
                ("consent.contact_point_changed", c.email_consent(True), c.opt_in_address),
                (
                    "consent.subscription_joined",
                    {"list_id": _LISTS[0][0], "list_name": newsletter},
                    c.join_newsletter,
                ),
            ]
        else:
            value = not c.prefill

            def prefill(v: bool = value) -> None:
                c.prefill = v

            changes.append(("consent.preferences_changed", {"allow_prefill": value}, prefill))
        self.later(
            ts,
            "form.submitted",
            "journeys",
            subj,
            {
                "form_id": "form-subscription-center",
                "fields": {"email": c.email},
                "consent_checkboxes": {"allow_bulk_email": bulk_after},
                "prefilled": True,
            },
            None,
            c,
        )
        for k, (etype, payload, effect) in enumerate(changes):
            self.later(tc + k * 10, etype, "journeys", subj, payload, None, c, effect)

    def _act_update(self, t: int, c: _Contact) -> None:
        rng = self.rng
        changes: Doc = {}
        if c.phone is None or rng.random() < 0.4:
            c.phone = f"+{33 if c.lang == 'fr' else 34}{rng.choice('67')}{rng.randrange(10**8):08d}"
            changes["phone"] = c.phone
        if rng.random() < 0.2:
            c.last = rng.choice(_LAST[c.lang])
            changes["last_name"] = c.last
        if not changes:
            changes["phone"] = c.phone
        self.later(
            t,
            "contact.updated",
            rng.choice(("sales", "customer-service")),
            c.subject,
            changes,
            None,
            c,
        )

    def _act_leave_account(self, t: int, c: _Contact) -> None:
        """A job change: the contact leaves the company, maybe joins another customer."""
        rng = self.rng
        old = c.account
        if old is None:
            return
        self.later(t, "contact.left_account", "sales", c.subject, {"account_id": old.id}, None, c)
        new = rng.choice(self.accounts)
        if new is not old and new.lang == c.lang and rng.random() < 0.5:
            moved = c.subject | {"account_id": new.id}
            c.set_account(new)
            self.later(
                t + MIN, "contact.joined_account", "sales", moved, {"account_id": new.id}, None, c
            )
            if not c.hard_bounced and not c.email_out:
                c.email = f"{_slug(c.first)}.{_slug(c.last)}@{new.domain}"
                c.bad_email = False
                self.later(
                    t + 2 * MIN, "contact.updated", "sales", moved, {"email": c.email}, None, c
                )
                if c.bulk:
                    consent = c.email_consent(True)
                    cp = "consent.contact_point_changed"
                    self.later(t + 2 * MIN + 10, cp, "sales", moved, consent, None, c)
        else:
            c.set_account(None)
        # A contact that left keeps a standalone profile: refresh what it does from now on.
        c.table = self._table(c)

    def _merge(self, t: int, original: _Contact, dup: _Contact) -> InteractionEvent | None:
        if original.gone or dup.gone:
            return None
        dup.gone = True
        return self.event(
            t, "contact.merged", "sales", original.subject, {"merged_contact_id": dup.id}
        )


def _share(contacts: int, share: float) -> int:
    """A share of the contact count, rounded (anonymous visitors, parentless leads)."""
    return round(contacts * share)


# --------------------------------------------------------------------------- public API

# Measured over seeds and windows from 1 to 365 days: a contact's profile, consent and welcome
# events, plus about 0.225 events a day of activity (contacts arrive over the window).
_FIXED_PER_CONTACT = 10.5
_PER_CONTACT_DAY = 0.225


def _check_counts(contacts: int, days: int) -> None:
    if isinstance(contacts, bool) or not isinstance(contacts, int) or contacts < 1:
        raise ValueError(f"contacts must be an integer >= 1, got {contacts!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")


def _check_end(end: datetime | None) -> datetime:
    if end is None:
        return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if not isinstance(end, datetime) or end.tzinfo is None or end.utcoffset() is None:
        raise ValueError(f"end must be a timezone-aware datetime, got {end!r}")
    return end.astimezone(UTC)


def generate(
    contacts: int, seed: int = 0, end: datetime | None = None, days: int = 365
) -> Iterator[InteractionEvent]:
    """Stream demo events in ``occurred_at`` order, all within ``[end - days, end)``.

    The same arguments give the same events, byte for byte once encoded. ``end`` defaults to
    today 00:00 UTC and must be timezone-aware. Memory grows with ``contacts`` (a small state
    per contact), not with the number of events.
    """
    _check_counts(contacts, days)
    return _Sim(contacts, seed, _check_end(end), days).run()


def estimate_events(contacts: int, days: int = 365) -> int:
    """A rough count of the events ``generate`` yields (within ~15 %), for a progress bar."""
    _check_counts(contacts, days)
    return max(1, round(contacts * (_FIXED_PER_CONTACT + _PER_CONTACT_DAY * days)))


def write_jsonl(
    out: BinaryIO,
    contacts: int,
    seed: int = 0,
    end: datetime | None = None,
    days: int = 365,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Write one encoded event per line; return how many.

    ``progress(n)`` is called every few thousand events with the number written since the
    previous call (so ``tqdm.update`` fits), and once more at the end for the remainder.
    """
    events = generate(contacts, seed, end, days)
    count = 0
    reported = 0
    chunk: list[bytes] = []
    for event in events:
        chunk.append(encode(event))
        count += 1
        if len(chunk) >= _WRITE_CHUNK:
            # Batched writes: one call per few hundred lines, whatever buffering `out` has.
            out.write(b"\n".join(chunk) + b"\n")
            chunk.clear()
            if progress is not None and count - reported >= _PROGRESS_EVERY:
                progress(count - reported)
                reported = count
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
    if progress is not None and count > reported:
        progress(count - reported)
    return count
