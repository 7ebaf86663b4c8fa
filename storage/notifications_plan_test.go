package storage

// Representative forms of the notification queries built at run time, for TestHotQueriesUseIndexes.
var (
	planClaimQ, planClaimArgs                 = claimQuery(100, 200, []string{"email/ops", "wecom_bot/team"})
	planNextDueQ, planNextDueArgs             = nextDueQuery([]string{"email/ops"})
	planQueueQ, planQueueArgs                 = queueListQuery(NotificationQueueFilter{Node: "hub", Kinds: planKinds, Limit: 20})
	planQueueFilteredQ, planQueueFilteredArgs = queueListQuery(NotificationQueueFilter{Node: "hub", Kinds: planKinds,
		Statuses: []string{NotificationFailed, NotificationCanceled}, Channels: []string{"email"}, Limit: 20})
	planQueueCursorQ, planQueueCursorArgs = queueListQuery(NotificationQueueFilter{Node: "hub", Kinds: planKinds,
		After: &NotificationCursor{CreatedAt: 100, ID: "x"}, Limit: 20})
	planQueueCountQ, planQueueCountArgs     = queueCountQuery(NotificationQueueFilter{Statuses: []string{NotificationQueued}})
	planKinds                               = []NotificationKind{{"wecom_bot", "wecom_bot"}, {"email", "smtp"}, {"webhook", "webhook"}}
	planDestinationsQ, planDestinationsArgs = listDestinationsQuery("hub", planKinds)
)
