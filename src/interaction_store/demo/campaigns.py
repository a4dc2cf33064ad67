"""What marketing and service send: the subscription lists, the email templates, and the
texts of SMS and push notifications, in French and Spanish."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SubscriptionList:
    """A marketing list a contact can join; its bit marks it in the contact's list mask."""

    id: str
    fr: str
    es: str

    def name(self, lang: str) -> str:
        return self.fr if lang == "fr" else self.es


LISTS = (
    SubscriptionList("list-newsletter", "Lettre d'information mensuelle", "Boletín mensual"),
    SubscriptionList("list-offers", "Offres et promotions", "Ofertas y promociones"),
    SubscriptionList("list-events", "Invitations aux événements", "Invitaciones a eventos"),
    SubscriptionList("list-product-news", "Nouveautés produit", "Novedades de producto"),
)
# The bits of LISTS, in order: a contact's lists are a bit mask.
NEWSLETTER, OFFERS, EVENTS, PRODUCT_NEWS = 1, 2, 4, 8


@dataclass(frozen=True, slots=True)
class Mail:
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
        return LISTS[self.list_bit.bit_length() - 1].id if self.list_bit else None


WELCOME = (
    Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("Bienvenue chez Contoso, {first} !",
           "Découvrez tout ce que votre espace client vous permet de faire."),
          ("¡Bienvenido a Contoso, {first}!",
           "Descubra todo lo que puede hacer desde su área de cliente."),
          ("", "")),
    Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("3 astuces pour bien démarrer", "Gagnez du temps dès la première semaine."),
          ("3 consejos para empezar", "Ahorre tiempo desde la primera semana."),
          ("blog/bien-demarrer", "blog/primeros-pasos")),
    Mail("cmp-welcome", "jrn-welcome", 0, "commercial", "journeys",
          ("Votre avis compte, {first}", "Dites-nous en 2 minutes ce que vous attendez de nous."),
          ("Su opinión nos importa, {first}", "Cuéntenos en 2 minutos qué espera de nosotros."),
          ("enquete", "encuesta")),
)  # fmt: skip
PROMOS = (
    Mail("cmp-spring-analytics", "jrn-promo", OFFERS, "commercial", "journeys",
          ("-20 % sur Contoso Analytics jusqu'à dimanche",
           "Profitez de l'offre de printemps réservée à nos clients."),
          ("-20 % en Contoso Analytics hasta el domingo",
           "Aproveche la oferta de primavera reservada a nuestros clientes."),
          ("produits/analytics", "productos/analytics")),
    Mail("cmp-whitepaper-ia", "jrn-nurture", 0, "commercial", "journeys",
          ("Livre blanc : l'IA au service de la relation client",
           "Téléchargez gratuitement notre guide de 24 pages."),
          ("Libro blanco: la IA al servicio de la atención al cliente",
           "Descargue gratis nuestra guía de 24 páginas."),
          ("livres-blancs/ia-relation-client", "libros-blancos/ia-atencion-cliente")),
    Mail("cmp-trial-field-service", "jrn-nurture", 0, "commercial", "journeys",
          ("Votre essai gratuit de Contoso Field Service",
           "Activez 30 jours d'essai, sans engagement."),
          ("Su prueba gratuita de Contoso Field Service",
           "Active 30 días de prueba, sin compromiso."),
          ("produits/field-service", "productos/field-service")),
    Mail("cmp-case-fabrikam", "jrn-nurture", 0, "commercial", "journeys",
          ("Cas client : Fabrikam a réduit ses délais de 30 %",
           "Comment une PME lyonnaise a transformé son service client."),
          ("Caso de éxito: Fabrikam redujo sus plazos un 30 %",
           "Cómo una pyme de Valencia transformó su atención al cliente."),
          ("blog/cas-client-fabrikam", "blog/caso-de-exito-fabrikam")),
    Mail("cmp-year-end", "jrn-promo", OFFERS, "commercial", "journeys",
          ("Dernière chance : l'offre de fin d'année expire ce soir",
           "Jusqu'à 3 mois offerts sur votre abonnement annuel."),
          ("Última oportunidad: la oferta de fin de año termina hoy",
           "Hasta 3 meses gratis en su suscripción anual."),
          ("tarifs", "precios")),
    Mail("cmp-realtime-dashboards", "jrn-product", PRODUCT_NEWS, "commercial", "journeys",
          ("Nouveau : des tableaux de bord en temps réel",
           "Suivez vos indicateurs à la minute, sans configuration."),
          ("Novedad: paneles en tiempo real",
           "Siga sus indicadores al minuto, sin configuración."),
          ("produits/crm-cloud", "productos/crm-cloud")),
)  # fmt: skip
NEWSLETTER_MAIL = Mail(
    "cmp-newsletter", "jrn-newsletter", NEWSLETTER, "commercial", "outbound-marketing",
    ("La lettre Contoso — {month}",
     "Nouveautés produit, témoignages clients et événements du mois."),
    ("Boletín Contoso — {month}", "Novedades de producto, casos de éxito y eventos del mes."),
    ("blog", "blog"),
)  # fmt: skip
TRANSACTIONAL = (
    Mail("cmp-billing", "jrn-billing", 0, "transactional", "journeys",
          ("Votre facture de {month} est disponible", "Consultez-la dans votre espace client."),
          ("Su factura de {month} está disponible", "Consúltela en su área de cliente."),
          ("espace-client/factures", "area-cliente/facturas")),
    Mail("cmp-order", "jrn-order", 0, "transactional", "journeys",
          ("Confirmation de votre commande", "Merci pour votre achat : voici le récapitulatif."),
          ("Confirmación de su pedido", "Gracias por su compra: este es el resumen."),
          ("espace-client/commandes", "area-cliente/pedidos")),
    Mail("cmp-password", "jrn-account", 0, "transactional", "journeys",
          ("Réinitialisation de votre mot de passe", "Ce lien est valable 30 minutes."),
          ("Restablecimiento de su contraseña", "Este enlace es válido durante 30 minutos."),
          ("connexion", "acceso")),
)  # fmt: skip
EVENT_INVITATION = Mail(
    "cmp-events", "jrn-events", EVENTS, "commercial", "journeys",
    ("Invitation : {event}", "Rejoignez-nous le {date} — places limitées."),
    ("Invitación: {event}", "Acompáñenos el {date}: plazas limitadas."),
    ("evenements", "eventos"),
)  # fmt: skip
EVENT_CONFIRMATION = Mail(
    "cmp-events", "jrn-event-registration", 0, "transactional", "journeys",
    ("Confirmation de votre inscription : {event}", "Votre billet et les informations pratiques."),
    ("Confirmación de su inscripción: {event}", "Su entrada y la información práctica."),
    ("evenements", "eventos"),
)  # fmt: skip
CASE_ACK = Mail(
    "cmp-service", "jrn-case", 0, "transactional", "customer-service",
    ("Nous avons bien reçu votre demande {case}", "Un conseiller vous répond sous 24 heures."),
    ("Hemos recibido su solicitud {case}", "Un agente le responderá en 24 horas."),
    ("support", "soporte"),
)  # fmt: skip
CASE_DONE = Mail(
    "cmp-service", "jrn-case", 0, "transactional", "customer-service",
    ("Votre demande {case} est résolue", "Dites-nous si la solution vous convient."),
    ("Su solicitud {case} se ha resuelto", "Díganos si la solución le resulta útil."),
    ("support", "soporte"),
)  # fmt: skip

SMS = {
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
SMS_REPLIES = {
    "fr": ("Merci !", "OK", "Oui, c'est noté", "C'est à quelle heure ?"),
    "es": ("¡Gracias!", "Vale", "Sí, de acuerdo", "¿A qué hora es?"),
}
PUSH = {
    "fr": (("Votre rapport mensuel est prêt", "Consultez vos indicateurs du mois dans l'appli."),
           ("Offre flash", "-30 % sur les modules complémentaires, aujourd'hui seulement."),
           ("Nouveau message", "Votre conseiller vous a répondu."),
           ("Mise à jour disponible", "Découvrez les nouveautés de la version 4.2.")),
    "es": (("Su informe mensual está listo", "Consulte sus indicadores del mes en la app."),
           ("Oferta flash", "-30 % en los módulos complementarios, solo hoy."),
           ("Nuevo mensaje", "Su asesor le ha respondido."),
           ("Actualización disponible", "Descubra las novedades de la versión 4.2.")),
}  # fmt: skip
SOFT_BOUNCE = ("mailbox full", "temporary failure: try again later", "message too large")
HARD_BOUNCE = ("550 5.1.1 user unknown", "550 5.1.2 domain not found", "mailbox disabled")
